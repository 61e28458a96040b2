// Package testutil holds the few helpers that the project's tests and its
// test-cluster packages (shard/shardtest, node/nodetest) all need: a logger
// that writes to the test's log, and a wait for a condition. It is imported
// only by tests and test-support packages, never by production code.
package testutil

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Logger returns a logger at level writing to t.Log until the test and its
// cleanups are done. Lines logged later — by goroutines still winding down
// after the test returned, which t.Log would panic on — are dropped.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// Eventually calls f, then again every poll, until it returns nil; if it
// has not within timeout, it fails the test with f's last error.
func Eventually(t testing.TB, timeout, poll time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(poll)
	}
}
