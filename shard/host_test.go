package shard_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
	"github.com/frontdeskhq/frontdesk/shard/transport"
)

// TestCloseLeavesNoGoroutines runs a cluster, writes, closes it, and checks
// that every goroutine the shards started has exited. Not parallel: it
// counts the process's goroutines.
//
// One kind may stay, as shard/DESIGN.md ("Waiting") says: a batcher's wait
// on a raft future that raft never answers because it shut down with the
// entry committed but not applied (here, a tick in flight at Close). Those
// are counted apart; any other goroutine left fails the test.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	base, _, _ := goroutines()
	c := shardtest.NewCluster(t, 3, 2, shardtest.WithTickInterval(10*time.Millisecond))
	for s := range c.Shards() {
		setupMerchant(t, c, s, "m", 0, 1, 5)
		c.Propose(t, s, consult("m", "b1"))
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		all, unanswered, dump := goroutines()
		if all-unanswered <= base {
			if unanswered > 0 {
				t.Logf("%d goroutines wait on raft futures raft shut down without answering", unanswered)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still running after Close (%d of them waiting on futures raft will not answer), want at most %d as before:\n%s",
				all, unanswered, base, dump)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goroutines counts the process's goroutines and, among them, the batcher's
// waits on a raft future (shard.(*batcher).send's goroutine blocked in the
// future's Error); dump is every goroutine's stack.
func goroutines() (all, unanswered int, dump string) {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 2) // one stack per goroutine, blank-line separated
	dump = buf.String()
	for _, g := range strings.Split(dump, "\n\n") {
		if !strings.HasPrefix(g, "goroutine ") {
			continue
		}
		all++
		if strings.Contains(g, "raft.(*deferError).Error") && strings.Contains(g, "shard.(*batcher).send.func") {
			unanswered++
		}
	}
	return all, unanswered, dump
}

func TestHostBootstrapAndHasState(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 1, 1, shardtest.WithoutBootstrap())
	n := c.Node(0)
	h := n.Host()
	if has, err := h.HasState(0); err != nil || has {
		t.Fatalf("HasState(0) of a fresh replica = %v, %v; want false", has, err)
	}
	if has, err := h.HasState(7); err != nil || has {
		t.Fatalf("HasState(7) of a shard never opened = %v, %v; want false", has, err)
	}
	if _, err := os.Stat(filepath.Join(n.DataDir, "shards", "7")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("HasState created a directory for a shard never opened (stat: %v)", err)
	}
	g, _ := h.Group(0)
	if again, err := h.Open(0); err != nil || again != g {
		t.Fatalf("Open of an open shard = %p, %v; want the open Group %p", again, err, g)
	}
	if err := g.Bootstrap([]raft.Server{n.Server()}); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if has, err := h.HasState(0); err != nil || !has {
		t.Fatalf("HasState(0) after Bootstrap = %v, %v; want true", has, err)
	}
	if err := g.Bootstrap([]raft.Server{n.Server()}); !errors.Is(err, shard.ErrHasState) {
		t.Fatalf("second Bootstrap: got %v, want ErrHasState", err)
	}

	// A single voter leads alone, and has nobody to hand leadership to.
	c.WaitForLeader(t, 0)
	c.Propose(t, 0, consult("m", "b"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.TransferLeadershipAway(ctx); err != nil || ctx.Err() != nil || !g.IsLeader() {
		t.Fatalf("TransferLeadershipAway with one voter: got %v (ctx %v, leader %v), want nil at once and the lead kept",
			err, ctx.Err(), g.IsLeader())
	}

	// A closed shard's directory reports its state without being opened.
	c.Kill(t, 0)
	h2 := newHost(t, n.ID, n.DataDir)
	if has, err := h2.HasState(0); err != nil || !has {
		t.Fatalf("HasState(0) of a closed replica with data = %v, %v; want true", has, err)
	}
	if groups := h2.Groups(); len(groups) != 0 {
		t.Fatalf("HasState opened %d groups; want none", len(groups))
	}
}

// newHost starts a Host on a fresh loopback Mux, closed at cleanup.
func newHost(t testing.TB, id, dir string) *shard.Host {
	t.Helper()
	mux := newMux(t)
	h, err := shard.NewHost(shard.HostConfig{NodeID: id, DataDir: dir, Mux: mux, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// newMux opens a Mux on a fresh loopback port, closed at cleanup (after
// whatever the test registers later, such as a Host's close).
func newMux(t testing.TB) *transport.Mux {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	mux, err := transport.NewMux(ln, nil, transport.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("NewMux: %v", err)
	}
	t.Cleanup(func() { mux.Close() })
	return mux
}

func TestNewHostValidates(t *testing.T) {
	t.Parallel()
	mux := newMux(t)
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	for name, cfg := range map[string]shard.HostConfig{
		"no node id":                         {DataDir: dir, Mux: mux},
		"no data dir":                        {NodeID: "n", Mux: mux},
		"no mux":                             {NodeID: "n", DataDir: dir},
		"MaxAppendEntries over raft's limit": {NodeID: "n", DataDir: dir, Mux: mux, MaxAppendEntries: 1025},
		"negative MaxAppendEntries":          {NodeID: "n", DataDir: dir, Mux: mux, MaxAppendEntries: -1},
	} {
		if _, err := shard.NewHost(cfg); err == nil {
			t.Errorf("NewHost with %s: no error", name)
		}
	}
	// Timings raft rejects fail at Open, naming the problem.
	h, err := shard.NewHost(shard.HostConfig{NodeID: "n", DataDir: dir, Mux: mux, Logger: quiet,
		Raft: shard.RaftTiming{HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond}})
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	defer h.Close()
	if _, err := h.Open(0); err == nil {
		t.Fatalf("Open with an election timeout below the heartbeat timeout: no error")
	}
	if _, ok := h.Group(0); ok {
		t.Fatalf("a replica that failed to open is listed")
	}
	// The failed Open released the shard's layer and store: it can be
	// opened by a correct Host.
	h2, err := shard.NewHost(shard.HostConfig{NodeID: "n", DataDir: dir, Mux: mux, Logger: quiet, Raft: shard.FastTiming()})
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	defer h2.Close()
	if _, err := h2.Open(0); err != nil {
		t.Fatalf("Open after a failed Open: %v", err)
	}
}
