// Package hclogslog adapts log/slog to hclog.Logger, so that hashicorp/raft
// and memberlist log through the process's slog handler.
//
// Levels map one to one (hclog.Trace to [LevelTrace], below slog.LevelDebug);
// hclog.NoLevel logs at Info and hclog.Off logs nothing. A logger's name
// (Named, ResetNamed) is written as the attribute "logger", names joined with
// "."; With arguments become slog attributes. Arguments follow hclog's rules:
// alternating keys and values, a trailing value without key is logged under
// hclog.MissingKey, and hclog.Format, Hex, Octal, Binary and Quote values are
// rendered as hclog renders them.
//
// The level of a logger is the slog handler's level, optionally raised by
// SetLevel; SetLevel affects the logger and every logger derived from it or
// from which it derives. Loggers are safe for concurrent use.
package hclogslog

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is the slog level of hclog.Trace records.
const LevelTrace = slog.LevelDebug - 4

// NameKey is the attribute holding the hclog logger name.
const NameKey = "logger"

// New returns an hclog.Logger writing to l's handler. A nil l means
// slog.Default().
func New(l *slog.Logger) hclog.Logger {
	if l == nil {
		l = slog.Default()
	}
	root := l.Handler()
	return &logger{root: root, h: root, level: new(atomic.Int32)}
}

type logger struct {
	root    slog.Handler // as given to New
	h       slog.Handler // root with name and implied args
	name    string
	implied []any
	level   *atomic.Int32 // hclog.Level set by SetLevel, shared by derived loggers
}

var _ hclog.Logger = (*logger)(nil)

// derive returns a copy of l with the given name and implied args.
func (l *logger) derive(name string, implied []any) *logger {
	n := &logger{root: l.root, name: name, implied: implied, level: l.level}
	var as []slog.Attr
	if name != "" {
		as = append(as, slog.String(NameKey, name))
	}
	n.h = l.root.WithAttrs(append(as, attrs(implied)...))
	return n
}

func (l *logger) enabled(lv hclog.Level) bool {
	if lv == hclog.Off {
		return false
	}
	if lv == hclog.NoLevel {
		lv = hclog.Info
	}
	if lv < hclog.Level(l.level.Load()) {
		return false
	}
	return l.h.Enabled(context.Background(), toSlog(lv))
}

// emit logs a record; pc is the caller's program counter, or 0.
func (l *logger) emit(lv hclog.Level, pc uintptr, msg string, args []any) {
	if !l.enabled(lv) {
		return
	}
	r := slog.NewRecord(time.Now(), toSlog(lv), msg, pc)
	r.AddAttrs(attrs(args)...)
	_ = l.h.Handle(context.Background(), r)
}

// logAt logs on behalf of the caller of an exported method.
func (l *logger) logAt(lv hclog.Level, msg string, args []any) {
	if !l.enabled(lv) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // runtime.Callers, logAt, the exported method
	l.emit(lv, pcs[0], msg, args)
}

func (l *logger) Log(lv hclog.Level, msg string, args ...any) { l.logAt(lv, msg, args) }
func (l *logger) Trace(msg string, args ...any)               { l.logAt(hclog.Trace, msg, args) }
func (l *logger) Debug(msg string, args ...any)               { l.logAt(hclog.Debug, msg, args) }
func (l *logger) Info(msg string, args ...any)                { l.logAt(hclog.Info, msg, args) }
func (l *logger) Warn(msg string, args ...any)                { l.logAt(hclog.Warn, msg, args) }
func (l *logger) Error(msg string, args ...any)               { l.logAt(hclog.Error, msg, args) }

func (l *logger) IsTrace() bool { return l.enabled(hclog.Trace) }
func (l *logger) IsDebug() bool { return l.enabled(hclog.Debug) }
func (l *logger) IsInfo() bool  { return l.enabled(hclog.Info) }
func (l *logger) IsWarn() bool  { return l.enabled(hclog.Warn) }
func (l *logger) IsError() bool { return l.enabled(hclog.Error) }

func (l *logger) ImpliedArgs() []any { return l.implied }

func (l *logger) With(args ...any) hclog.Logger {
	implied := make([]any, 0, len(l.implied)+len(args)+1)
	implied = append(append(implied, l.implied...), pairs(args)...)
	return l.derive(l.name, implied)
}

func (l *logger) Name() string { return l.name }

func (l *logger) Named(name string) hclog.Logger {
	if l.name != "" {
		name = l.name + "." + name
	}
	return l.derive(name, l.implied)
}

func (l *logger) ResetNamed(name string) hclog.Logger { return l.derive(name, l.implied) }

// SetLevel raises the threshold above the handler's own level for this
// logger and all related ones; hclog.NoLevel leaves the handler in charge.
func (l *logger) SetLevel(lv hclog.Level) { l.level.Store(int32(lv)) }

// GetLevel returns the lowest hclog level that would be logged, or
// hclog.Off.
func (l *logger) GetLevel() hclog.Level {
	for lv := hclog.Trace; lv <= hclog.Error; lv++ {
		if l.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

func (l *logger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer logging each Write as one record, with the
// level chosen as hclog's does: opts.ForceLevel, else a "[LEVEL]" prefix when
// opts.InferLevels is set (after a timestamp with InferLevelsWithTimestamp),
// else Info. memberlist's "[DEBUG] memberlist: ..." lines want InferLevels.
func (l *logger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &stdWriter{l: l, opts: *opts}
}

type stdWriter struct {
	l    *logger
	opts hclog.StandardLoggerOptions
}

func (w *stdWriter) Write(p []byte) (int, error) {
	s := strings.TrimRight(string(p), " \t\n")
	lv := hclog.Info
	switch {
	case w.opts.ForceLevel != hclog.NoLevel:
		_, s = pickLevel(s)
		lv = w.opts.ForceLevel
	case w.opts.InferLevels:
		if w.opts.InferLevelsWithTimestamp {
			s = strings.TrimLeft(s, "0123456789 \t:/.+-TZ")
		}
		lv, s = pickLevel(s)
	}
	w.l.emit(lv, 0, s, nil)
	return len(p), nil
}

// pickLevel strips a leading "[LEVEL]" and returns the level it names,
// Info if none.
func pickLevel(s string) (hclog.Level, string) {
	for _, p := range []struct {
		prefix string
		level  hclog.Level
	}{
		{"[TRACE]", hclog.Trace},
		{"[DEBUG]", hclog.Debug},
		{"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn},
		{"[ERROR]", hclog.Error},
		{"[ERR]", hclog.Error},
	} {
		if rest, ok := strings.CutPrefix(s, p.prefix); ok {
			return p.level, strings.TrimSpace(rest)
		}
	}
	return hclog.Info, s
}

func toSlog(lv hclog.Level) slog.Level {
	switch lv {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// pairs returns args with an even length: a trailing value gets
// hclog.MissingKey as its key.
func pairs(args []any) []any {
	if len(args)%2 == 0 {
		return args
	}
	n := len(args) - 1
	return append(args[:n:n], hclog.MissingKey, args[n])
}

func attrs(args []any) []slog.Attr {
	args = pairs(args)
	out := make([]slog.Attr, 0, len(args)/2)
	for i := 0; i < len(args); i += 2 {
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		out = append(out, slog.Any(key, value(args[i+1])))
	}
	return out
}

// value renders hclog's formatting types the way hclog does.
func value(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return "0x" + strconv.FormatUint(uint64(v), 16)
	case hclog.Octal:
		return "0" + strconv.FormatUint(uint64(v), 8)
	case hclog.Binary:
		return "0b" + strconv.FormatUint(uint64(v), 2)
	case hclog.Quote:
		return strconv.Quote(string(v))
	}
	return v
}
