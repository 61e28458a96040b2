package transport

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventually calls f until it returns nil, failing the test with f's last
// error if that has not happened within timeout.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
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
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogger returns a logger writing to t.Log until the test and its
// cleanups are done, so late log lines from background goroutines are
// dropped instead of panicking.
func testLogger(t testing.TB, level slog.Level) *slog.Logger {
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

// newTestMux starts a Mux on a fresh loopback port, closed at cleanup.
func newTestMux(t testing.TB, opts ...Option) *Mux {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on loopback: %v", err)
	}
	opts = append([]Option{WithLogger(testLogger(t, slog.LevelDebug))}, opts...)
	m, err := NewMux(ln, nil, opts...)
	if err != nil {
		t.Fatalf("NewMux(%s): %v", ln.Addr(), err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("closing mux %s: %v", m.Addr(), err)
		}
	})
	return m
}

// checkNoLeaks returns a function that fails the test unless the number of
// goroutines drops back to what it is now. Tests using it must not run in
// parallel with others.
func checkNoLeaks(t testing.TB) func() {
	t.Helper()
	base := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				var buf bytes.Buffer
				pprof.Lookup("goroutine").WriteTo(&buf, 1)
				t.Fatalf("goroutine leak: %d running, want at most %d as before the test:\n%s",
					runtime.NumGoroutine(), base, buf.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// expectClosedByPeer fails the test unless the peer closes c within 5s:
// a read must end with an error other than our own deadline.
func expectClosedByPeer(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [64]byte
	for {
		n, err := c.Read(b[:])
		if err == nil {
			t.Fatalf("want the connection closed by the peer, read %q", b[:n])
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("want the connection closed by the peer within 5s, still open")
		}
		return
	}
}
