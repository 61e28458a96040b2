package testutil

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a testing.TB that records what a helper does with it.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	logs     []string
	fatal    string
	cleanups []func()
}

func (r *recorder) Helper() {}
func (r *recorder) Log(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range args {
		r.logs = append(r.logs, a.(string))
	}
}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = format
	panic(r) // stands in for runtime.Goexit
}

func TestLoggerStopsAtCleanup(t *testing.T) {
	r := &recorder{TB: t}
	log := Logger(r, slog.LevelInfo)
	log.Debug("below the level")
	log.Info("kept")
	for _, f := range r.cleanups {
		f()
	}
	log.Info("after the test")
	if len(r.logs) != 1 || !strings.Contains(r.logs[0], "msg=kept") || strings.HasSuffix(r.logs[0], "\n") {
		t.Fatalf("logged %q; want the one info line before cleanup, without its newline", r.logs)
	}
}

func TestEventually(t *testing.T) {
	calls := 0
	Eventually(t, time.Second, time.Millisecond, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("f called %d times; want 3 (until it returned nil)", calls)
	}

	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != r {
				panic(p)
			}
		}()
		Eventually(r, 20*time.Millisecond, time.Millisecond, func() error { return errors.New("never") })
	}()
	if !strings.HasPrefix(r.fatal, "still failing after") {
		t.Fatalf("a condition never met: Fatalf %q; want a failure naming the timeout", r.fatal)
	}
}
