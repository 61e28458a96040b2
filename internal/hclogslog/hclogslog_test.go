package hclogslog_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/frontdeskhq/frontdesk/internal/hclogslog"
)

// capture returns an hclog.Logger over a JSON slog handler at level, and a
// function returning the records written so far.
func capture(t *testing.T, level slog.Level) (hclog.Logger, func() []map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level, AddSource: true})
	return hclogslog.New(slog.New(h)), func() []map[string]any {
		t.Helper()
		var recs []map[string]any
		for line := range strings.Lines(buf.String()) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("handler wrote invalid JSON %q: %v", line, err)
			}
			recs = append(recs, rec)
		}
		return recs
	}
}

func TestLevels(t *testing.T) {
	tests := []struct {
		log  func(hclog.Logger)
		want string
	}{
		{func(l hclog.Logger) { l.Trace("m") }, "DEBUG-4"},
		{func(l hclog.Logger) { l.Debug("m") }, "DEBUG"},
		{func(l hclog.Logger) { l.Info("m") }, "INFO"},
		{func(l hclog.Logger) { l.Warn("m") }, "WARN"},
		{func(l hclog.Logger) { l.Error("m") }, "ERROR"},
		{func(l hclog.Logger) { l.Log(hclog.Warn, "m") }, "WARN"},
		{func(l hclog.Logger) { l.Log(hclog.NoLevel, "m") }, "INFO"},
	}
	for _, tt := range tests {
		l, records := capture(t, hclogslog.LevelTrace)
		tt.log(l)
		recs := records()
		if len(recs) != 1 || recs[0]["level"] != tt.want {
			t.Errorf("want one record at level %s, got %v", tt.want, recs)
		}
	}
	l, records := capture(t, hclogslog.LevelTrace)
	l.Log(hclog.Off, "m")
	if recs := records(); len(recs) != 0 {
		t.Errorf("hclog.Off must log nothing, got %v", recs)
	}
}

func TestSourceIsCaller(t *testing.T) {
	l, records := capture(t, slog.LevelInfo)
	l.Info("m")
	src, _ := records()[0]["source"].(map[string]any)
	if f, _ := src["file"].(string); !strings.HasSuffix(f, "hclogslog_test.go") {
		t.Errorf("want source in hclogslog_test.go, got %v", src)
	}
}

func TestHandlerLevelAndSetLevel(t *testing.T) {
	l, records := capture(t, slog.LevelInfo)
	if l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Errorf("handler at Info: want IsDebug false, IsInfo true, GetLevel Info; got %v %v %v",
			l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
	child := l.Named("raft")
	l.SetLevel(hclog.Error)
	child.Warn("dropped")
	child.Error("kept")
	if recs := records(); len(recs) != 1 || recs[0]["msg"] != "kept" {
		t.Errorf("SetLevel(Error) on the parent must filter the child: want only \"kept\", got %v", recs)
	}
	if got := child.GetLevel(); got != hclog.Error {
		t.Errorf("child GetLevel: want Error, got %v", got)
	}
	l.SetLevel(hclog.NoLevel)
	if got := child.GetLevel(); got != hclog.Info {
		t.Errorf("after SetLevel(NoLevel) the handler decides: want Info, got %v", got)
	}
}

func TestNamedAndWith(t *testing.T) {
	l, records := capture(t, slog.LevelInfo)
	n := l.Named("raft").With("shard", 3).Named("net")
	if n.Name() != "raft.net" {
		t.Errorf("Name: want raft.net, got %q", n.Name())
	}
	if got := n.ImpliedArgs(); len(got) != 2 || got[0] != "shard" || got[1] != 3 {
		t.Errorf("ImpliedArgs: want [shard 3], got %v", got)
	}
	n.Info("hello", "peer", "n2", "odd")
	n.ResetNamed("memberlist").Info("reset")
	recs := records()
	if len(recs) != 2 {
		t.Fatalf("want 2 records, got %v", recs)
	}
	r := recs[0]
	if r["logger"] != "raft.net" || r["shard"] != float64(3) || r["peer"] != "n2" || r[hclog.MissingKey] != "odd" {
		t.Errorf("want logger=raft.net shard=3 peer=n2 %s=odd, got %v", hclog.MissingKey, r)
	}
	if recs[1]["logger"] != "memberlist" || recs[1]["shard"] != float64(3) {
		t.Errorf("ResetNamed: want logger=memberlist keeping shard=3, got %v", recs[1])
	}
}

func TestFormattingValues(t *testing.T) {
	l, records := capture(t, slog.LevelInfo)
	l.Info("m", "f", hclog.Fmt("%d-%s", 7, "x"), "h", hclog.Hex(255), "o", hclog.Octal(8),
		"b", hclog.Binary(5), "q", hclog.Quote("a b"))
	r := records()[0]
	want := map[string]string{"f": "7-x", "h": "0xff", "o": "010", "b": "0b101", "q": `"a b"`}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s: want %q, got %v", k, v, r[k])
		}
	}
}

func TestStandardLogger(t *testing.T) {
	tests := []struct {
		name      string
		opts      *hclog.StandardLoggerOptions
		line      string
		wantLevel string
		wantMsg   string
	}{
		{"plain", nil, "[WARN] memberlist: x", "INFO", "[WARN] memberlist: x"},
		{"infer", &hclog.StandardLoggerOptions{InferLevels: true}, "[WARN] memberlist: x", "WARN", "memberlist: x"},
		{"infer err", &hclog.StandardLoggerOptions{InferLevels: true}, "[ERR] memberlist: y", "ERROR", "memberlist: y"},
		{"infer none", &hclog.StandardLoggerOptions{InferLevels: true}, "no level", "INFO", "no level"},
		{"timestamp", &hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true},
			"2025/01/02 15:04:05 [DEBUG] memberlist: z", "DEBUG", "memberlist: z"},
		{"force", &hclog.StandardLoggerOptions{ForceLevel: hclog.Error}, "[INFO] boom", "ERROR", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, records := capture(t, hclogslog.LevelTrace)
			l.Named("gossip").StandardLogger(tt.opts).Println(tt.line)
			recs := records()
			if len(recs) != 1 {
				t.Fatalf("want 1 record, got %v", recs)
			}
			r := recs[0]
			if r["level"] != tt.wantLevel || r["msg"] != tt.wantMsg || r["logger"] != "gossip" {
				t.Errorf("want level=%s msg=%q logger=gossip, got %v", tt.wantLevel, tt.wantMsg, r)
			}
		})
	}
}
