package localnode

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// The test binary doubles as the process a Proc runs: with
// LOCALNODE_HELPER set, TestMain acts as the helper instead of testing.
func TestMain(m *testing.M) {
	switch os.Getenv("LOCALNODE_HELPER") {
	case "":
		os.Exit(m.Run())
	case "sleep": // say hello, then wait to be signalled
		fmt.Println("helper started")
		time.Sleep(time.Minute)
	case "stubborn": // ignore SIGTERM
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("helper started")
		time.Sleep(time.Minute)
	case "exit":
		fmt.Println("helper exiting")
		os.Exit(3)
	}
	os.Exit(0)
}

func helper(t *testing.T, mode string) *Proc {
	t.Helper()
	t.Setenv("LOCALNODE_HELPER", mode)
	p := &Proc{Argv: []string{os.Args[0]}, LogPath: filepath.Join(t.TempDir(), "node.log")}
	t.Cleanup(func() { _ = p.Signal(syscall.SIGKILL, 5*time.Second) })
	return p
}

func waitLog(t *testing.T, p *Proc, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(Tail(p.LogPath, 5), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log %q never showed %q", Tail(p.LogPath, 5), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProcLifecycle(t *testing.T) {
	p := helper(t, "sleep")
	if p.Running() || p.Pid() != 0 {
		t.Fatalf("before Start: running %v, pid %d; want false, 0", p.Running(), p.Pid())
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if !p.Running() || p.Pid() == 0 {
		t.Fatalf("after Start: running %v, pid %d; want true and a pid", p.Running(), p.Pid())
	}
	if err := p.Start(); err == nil {
		t.Fatal("a second Start while running succeeded; want an error")
	}
	waitLog(t, p, "helper started")
	if err := p.Signal(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("Signal(SIGTERM): %v", err)
	}
	if p.Running() || p.Pid() != 0 {
		t.Fatalf("after SIGTERM: running %v, pid %d; want false, 0", p.Running(), p.Pid())
	}
	// Started again, it appends to the same log.
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "helper started\nhelper started")
}

func TestSignalKillsAfterWait(t *testing.T) {
	p := helper(t, "stubborn")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "helper started") // its SIGTERM handler is set by now
	err := p.Signal(syscall.SIGTERM, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Signal(SIGTERM) to a process ignoring it: %v; want an error saying it was killed", err)
	}
	if p.Running() {
		t.Fatal("still running after Signal gave up on it")
	}
}

func TestWaitReady(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	api := strings.TrimPrefix(srv.URL, "http://")

	p := helper(t, "sleep")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if err := WaitReady(context.Background(), p, api, time.Now().Add(10*time.Second)); err != nil {
		t.Fatalf("WaitReady: %v; want nil once /readyz answers 200", err)
	}
	if calls.Load() != 3 {
		t.Fatalf("/readyz asked %d times; want 3 (two 503s, then 200)", calls.Load())
	}

	calls.Store(-1000) // 503 from now on
	err := WaitReady(context.Background(), p, api, time.Now().Add(300*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("WaitReady past its deadline: %v; want the last answer (503)", err)
	}

	q := helper(t, "exit")
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	if err := WaitReady(context.Background(), q, api, time.Now().Add(time.Minute)); !errors.Is(err, ErrExited) {
		t.Fatalf("WaitReady on a process that exits: %v; want ErrExited at once", err)
	}
	if !strings.Contains(Tail(q.LogPath, 1), "helper exiting") {
		t.Fatalf("log %q; want the helper's last line", Tail(q.LogPath, 1))
	}
}

func TestFreePorts(t *testing.T) {
	a, err := FreePorts("127.0.0.1", 20)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FreePorts("127.0.0.1", 20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range append(a, b...) {
		if seen[p] || p == 0 {
			t.Fatalf("port %d given twice (or zero): %v %v", p, a, b)
		}
		seen[p] = true
	}
}

// shardMaps serves GetShardMap with the given shard infos.
type shardMaps struct {
	frontdeskv1connect.UnimplementedClusterServiceHandler
	infos []*pb.ShardInfo
}

func (s shardMaps) GetShardMap(context.Context, *connect.Request[pb.GetShardMapRequest]) (*connect.Response[pb.GetShardMapResponse], error) {
	return connect.NewResponse(&pb.GetShardMapResponse{ShardInfos: s.infos}), nil
}

func serveShardMap(t *testing.T, infos ...*pb.ShardInfo) string {
	t.Helper()
	path, h := frontdeskv1connect.NewClusterServiceHandler(shardMaps{infos: infos})
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestLeaderOfHighestTerm(t *testing.T) {
	follower := serveShardMap(t, &pb.ShardInfo{Shard: 0, LocalState: "Follower", Term: 7})
	deposed := serveShardMap(t, &pb.ShardInfo{Shard: 0, LocalState: "Leader", Term: 6})
	current := serveShardMap(t, &pb.ShardInfo{Shard: 0, LocalState: "Leader", Term: 7})
	ctx := context.Background()
	if got := LeaderOf(ctx, []string{follower, deposed, current}, 0); got != 2 {
		t.Fatalf("LeaderOf = %d; want 2, the claimer with the highest term", got)
	}
	if got := LeaderOf(ctx, []string{current, deposed}, 0); got != 0 {
		t.Fatalf("LeaderOf = %d; want 0, the claimer with the highest term", got)
	}
	if got := LeaderOf(ctx, []string{follower, deposed, ""}, 0); got != 1 {
		t.Fatalf("LeaderOf with the current leader not running = %d; want 1", got)
	}
	if got := LeaderOf(ctx, []string{follower}, 0); got != -1 {
		t.Fatalf("LeaderOf with no claimer = %d; want -1", got)
	}
	if got := LeaderOf(ctx, []string{current}, 5); got != -1 {
		t.Fatalf("LeaderOf of a shard the map does not have = %d; want -1", got)
	}
	if m, err := ShardMap(ctx, "http://"+current); err != nil || len(m.ShardInfos) != 1 {
		t.Fatalf("ShardMap by URL: %v, %v; want the one shard", m, err)
	}
}

func TestTail(t *testing.T) {
	if got := TailString("a\nb\nc\n", 2); got != "b\nc" {
		t.Fatalf("TailString = %q; want %q", got, "b\nc")
	}
	if got := TailString("a", 5); got != "a" {
		t.Fatalf("TailString of one line = %q", got)
	}
	if got := Tail(filepath.Join(t.TempDir(), "missing"), 3); got != "" {
		t.Fatalf("Tail of a missing file = %q; want empty", got)
	}
}

func TestProcStats(t *testing.T) {
	pid := os.Getpid()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ticks, err := CPUTicks(pid)
		if err != nil {
			t.Fatal(err)
		}
		if ticks > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("CPUTicks stayed 0 while this process spun")
		}
		for i := 0; i < 1e7; i++ { // spin to use some CPU
			_ = i * i
		}
	}
	rss, err := RSSBytes(pid)
	if err != nil || rss < 1<<20 {
		t.Fatalf("RSSBytes = %d, %v; want at least 1 MiB", rss, err)
	}
	if _, err := CPUTicks(1 << 30); err == nil {
		t.Fatal("CPUTicks of a pid that does not exist: nil error")
	}
}
