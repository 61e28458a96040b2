package transport

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/internal/testutil"
)

// eventually calls f every 10ms until it returns nil (testutil.Eventually).
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, 10*time.Millisecond, f)
}

// testLogger is testutil.Logger.
var testLogger = testutil.Logger

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
