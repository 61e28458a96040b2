package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// checkJSON decodes one result object and checks the fields the issue
// asks for.
func checkJSON(t *testing.T, out []byte, nodes int) map[string]any {
	t.Helper()
	var r map[string]any
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("--json printed something that is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"ops_per_sec", "p50_ms", "p99_ms", "p999_ms", "errors", "retries", "ops"} {
		if _, ok := r[k].(float64); !ok {
			t.Errorf("JSON field %q is %v, want a number", k, r[k])
		}
	}
	if ops, _ := r["ops"].(float64); ops <= 0 {
		t.Errorf("ops = %v, want > 0", r["ops"])
	}
	if p50, p99 := r["p50_ms"].(float64), r["p99_ms"].(float64); p50 <= 0 || p99 < p50 {
		t.Errorf("p50 %v ms, p99 %v ms: want 0 < p50 <= p99", p50, p99)
	}
	ns, _ := r["nodes"].([]any)
	if len(ns) != nodes {
		t.Fatalf("nodes = %v, want %d entries", r["nodes"], nodes)
	}
	for i, n := range ns {
		m, _ := n.(map[string]any)
		cpu, ok1 := m["cpu_cores"].(float64)
		rss, ok2 := m["rss_mib"].(float64)
		if !ok1 || !ok2 || cpu <= 0 || rss <= 0 {
			t.Errorf("node %d: cpu_cores %v, rss_mib %v; want both > 0", i, m["cpu_cores"], m["rss_mib"])
		}
	}
	return r
}

// TestW1LocalSmoke runs `fdbench w1 --local 3 -d 3s -c 8 --batch 32 --gc-percent 400 --json`:
// three real frontdeskd processes built from this module, or the binary
// named by $FDBENCH_FRONTDESKD, called with client batching on.
func TestW1LocalSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds frontdeskd and starts three processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	clientLog := filepath.Join(t.TempDir(), "client.jsonl")
	args := []string{"w1", "--local", "3", "-d", "3s", "-c", "8", "--json", "--warmup", "500ms", "--setup-c", "64", "--batch", "32", "--gc-percent", "400",
		"--client-log", clientLog}
	if bin := os.Getenv("FDBENCH_FRONTDESKD"); bin != "" {
		args = append(args, "--frontdeskd", bin)
	}
	gcBefore := debug.SetGCPercent(100)
	debug.SetGCPercent(gcBefore)
	var out, errs bytes.Buffer
	err := run(ctx, args, &out, &errs)
	t.Logf("stderr:\n%s", errs.String())
	if err != nil {
		t.Fatalf("fdbench w1: %v", err)
	}
	r := checkJSON(t, out.Bytes(), 3)
	if r["mode"] != "w1" || r["shards"] != 16.0 || r["batch"] != 32.0 {
		t.Errorf("mode %v, shards %v, batch %v; want w1, 16 and 32", r["mode"], r["shards"], r["batch"])
	}
	// fdbench's own GC target is --gc-percent's during the run, and the
	// process's again after it.
	if r["bench_gc_percent"] != 400.0 {
		t.Errorf("bench_gc_percent = %v, want 400 (--gc-percent)", r["bench_gc_percent"])
	}
	if now := debug.SetGCPercent(gcBefore); now != gcBefore {
		t.Errorf("GC percent after the run %d, want %d as before it", now, gcBefore)
	}
	if r["errors"] != 0.0 {
		t.Errorf("errors = %v (last: %v), want 0 on a healthy cluster", r["errors"], r["last_error"])
	}
	// The client log is JSON lines, one record each (what a run logs
	// depends on its retries and slow ops).
	data, err := os.ReadFile(clientLog)
	if err != nil {
		t.Fatalf("--client-log: %v", err)
	}
	for i, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil || rec["msg"] == nil {
			t.Fatalf("--client-log line %d is not a log record (%v): %s", i+1, err, line)
		}
	}
	t.Logf("--client-log: %d bytes", len(data))
}

// A --client-log that cannot be created is an error naming the flag.
func TestClientLogUnwritable(t *testing.T) {
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"w1", "--addr", "127.0.0.1:1", "--client-log",
		filepath.Join(t.TempDir(), "missing", "client.jsonl")}, &out, &errs)
	if err == nil || !strings.Contains(err.Error(), "--client-log") {
		t.Fatalf("got %v, want an error naming --client-log", err)
	}
}

// TestCeilingSmoke runs `fdbench ceiling -d 2s -c 8 --json --cpuprofile F`.
func TestCeilingSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-voter raft cluster on disk")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errs bytes.Buffer
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	err := run(ctx, []string{"ceiling", "-d", "2s", "-c", "8", "--json", "--warmup", "0", "--cpuprofile", prof}, &out, &errs)
	t.Logf("stderr:\n%s", errs.String())
	if err != nil {
		t.Fatalf("fdbench ceiling: %v", err)
	}
	r := checkJSON(t, out.Bytes(), 1)
	if r["mode"] != "ceiling" || r["errors"] != 0.0 || r["bench_gc_percent"] != nil {
		t.Errorf("mode %v, errors %v, bench_gc_percent %v; want ceiling, 0 and none (the ceiling runs raft in this process: the runtime's GC target)", r["mode"], r["errors"], r["bench_gc_percent"])
	}
	// A CPU profile is gzipped protobuf.
	if b, err := os.ReadFile(prof); err != nil || len(b) < 100 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("--cpuprofile wrote %d bytes (err %v), want a gzipped profile", len(b), err)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nope"},
		{"w1"},                                // neither --addr nor --local
		{"w1", "--local", "3", "--addr", "x"}, // both
		{"w1", "--local", "3", "-c", "0"},
		{"w1", "--local", "3", "--batch", "-1"},
		{"failover", "--addr", "127.0.0.1:1"}, // failover must start its nodes
		{"ceiling", "--groups", "0"},
		{"w1", "--local", "3", "--vs-ceiling", "--cpuprofile", "cpu.prof"}, // one profile, two kinds of runs
	} {
		var out, errs bytes.Buffer
		if err := run(context.Background(), args, &out, &errs); err == nil {
			t.Errorf("fdbench %v: no error", args)
		}
	}
}
