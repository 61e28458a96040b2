package transport

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// downRecorder collects OnPeerDown reports.
type downRecorder struct {
	mu    sync.Mutex
	addrs []raft.ServerAddress
}

func (r *downRecorder) report(a raft.ServerAddress) {
	r.mu.Lock()
	r.addrs = append(r.addrs, a)
	r.mu.Unlock()
}

func (r *downRecorder) get() []raft.ServerAddress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]raft.ServerAddress(nil), r.addrs...)
}

func waitWatching(t *testing.T, m *Mux, want uint64) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		if got := m.Stats().Watching; got != want {
			return fmt.Errorf("%s holds %d watch connections, want %d", m.Addr(), got, want)
		}
		return nil
	})
}

// A watched peer whose Mux goes away (what its process dying does to its
// sockets) is reported once, promptly; before that, nothing is reported.
func TestWatchReportsPeerGone(t *testing.T) {
	checkLeaks := checkNoLeaks(t)
	a := newTestMux(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMux(ln, nil, WithLogger(testLogger(t, 0)))
	if err != nil {
		t.Fatal(err)
	}
	var rec downRecorder
	a.OnPeerDown(rec.report)
	baddr := raft.ServerAddress(b.Addr().String())
	a.WatchPeers([]raft.ServerAddress{baddr, raft.ServerAddress(a.Addr().String())})
	if got := a.Watched(); len(got) != 1 || got[0] != baddr {
		t.Fatalf("Watched() = %v, want only %s (its own address ignored)", got, baddr)
	}
	waitWatching(t, b, 1)
	time.Sleep(100 * time.Millisecond)
	if got := rec.get(); len(got) != 0 {
		t.Fatalf("reported down while alive: %v", got)
	}

	closed := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if got := rec.get(); len(got) == 0 {
			return fmt.Errorf("no report yet")
		}
		return nil
	})
	t.Logf("peer reported down %v after its Mux closed", time.Since(closed))
	if got := rec.get(); len(got) != 1 || got[0] != baddr {
		t.Fatalf("reports = %v, want [%s]", got, baddr)
	}
	if s := a.Stats(); s.PeersDown != 1 || s.WatchLost != 1 {
		t.Fatalf("stats = %+v, want PeersDown 1, WatchLost 1", s)
	}
	// While it stays down the watcher retries quietly: no second report.
	time.Sleep(3 * watchRetryMin)
	if got := rec.get(); len(got) != 1 {
		t.Fatalf("reports = %v, want one while the peer stays down", got)
	}
	a.Close()
	checkLeaks()
}

// A watch connection that breaks while the peer still listens is replaced
// without a report; a peer never reached is never reported; unwatching
// closes the connection.
func TestWatchBrokenConnectionIsNotPeerDown(t *testing.T) {
	checkLeaks := checkNoLeaks(t)
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
		return c, err
	}
	a := newTestMux(t, WithDialer(dial))
	b := newTestMux(t)
	var rec downRecorder
	a.OnPeerDown(rec.report)

	// An address nobody listens on: reserve a port, then free it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := raft.ServerAddress(ln.Addr().String())
	ln.Close()

	a.WatchPeers([]raft.ServerAddress{raft.ServerAddress(b.Addr().String()), nobody})
	waitWatching(t, b, 1)
	mu.Lock()
	first := conns[len(conns)-1]
	mu.Unlock()
	first.Close() // the connection breaks; b is fine
	eventually(t, 10*time.Second, func() error {
		if s := a.Stats(); s.WatchLost < 1 {
			return fmt.Errorf("stats %+v: the broken connection not noticed yet", s)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(conns) < 2 {
			return fmt.Errorf("not redialed yet")
		}
		return nil
	})
	waitWatching(t, b, 1)
	time.Sleep(2 * watchRetryMin)
	if got := rec.get(); len(got) != 0 {
		t.Fatalf("reported down: %v; want no report for a live peer or one never reached", got)
	}
	if s := a.Stats(); s.PeersDown != 0 {
		t.Fatalf("stats = %+v, want PeersDown 0", s)
	}

	a.WatchPeers(nil)
	waitWatching(t, b, 0)
	if got := a.Watched(); len(got) != 0 {
		t.Fatalf("Watched() = %v after WatchPeers(nil)", got)
	}
	a.WatchPeers([]raft.ServerAddress{raft.ServerAddress(b.Addr().String())})
	waitWatching(t, b, 1)
	a.Close() // stops its watchers
	waitWatching(t, b, 0)
	b.Close()
	checkLeaks()
}

// A redial that fails by a reset, to a peer that still listens, is tried
// again instead of reported; a refused one is reported at once.
func TestWatchRedialResetIsRetried(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fail       error
		wantReport bool
	}{
		{"reset", syscall.ECONNRESET, false},
		{"refused", syscall.ECONNREFUSED, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu    sync.Mutex
				conns []net.Conn
				fails int // dials left to fail with tc.fail
			)
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				mu.Lock()
				defer mu.Unlock()
				if fails > 0 {
					fails--
					return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", tc.fail)}
				}
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err == nil {
					conns = append(conns, c)
				}
				return c, err
			}
			a := newTestMux(t, WithDialer(dial))
			b := newTestMux(t)
			var rec downRecorder
			a.OnPeerDown(rec.report)
			a.WatchPeers([]raft.ServerAddress{raft.ServerAddress(b.Addr().String())})
			waitWatching(t, b, 1)

			mu.Lock()
			fails = 1
			first := conns[0]
			mu.Unlock()
			first.Close() // the connection ends; the next dial fails once
			eventually(t, 10*time.Second, func() error {
				if s := a.Stats(); s.WatchLost < 1 {
					return fmt.Errorf("stats %+v: the ended connection not noticed yet", s)
				}
				mu.Lock()
				defer mu.Unlock()
				if fails > 0 || len(conns) < 2 {
					return fmt.Errorf("not redialed yet")
				}
				return nil
			})
			waitWatching(t, b, 1)
			if got := len(rec.get()) > 0; got != tc.wantReport {
				t.Fatalf("peer reported down: %v, want %v (reports %v)", got, tc.wantReport, rec.get())
			}
		})
	}
}
