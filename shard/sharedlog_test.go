package shard_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
	"github.com/frontdeskhq/frontdesk/shard/sharedlog"
)

func withSharedLog(cfg *shard.HostConfig) { cfg.SharedLog = true }

// TestSharedLogCluster runs a cluster whose nodes keep every shard's log in
// one shared store: shards elect and commit, logs are compacted (chunked
// DeleteRange) and a killed follower catches up by snapshot, every node
// restarts with its state, and replicas converge byte for byte.
func TestSharedLogCluster(t *testing.T) {
	t.Parallel()
	const shards, threshold = 4, 32
	c := shardtest.NewCluster(t, 3, shards, shardtest.WithTickInterval(-1), shardtest.WithConfig(func(cfg *shard.HostConfig) {
		withSharedLog(cfg)
		cfg.SnapshotThreshold = threshold
		cfg.SnapshotInterval = 20 * time.Millisecond
		cfg.TrailingLogs = 8
		cfg.SharedLogOptions.DeleteChunk = 5
	}))
	for _, n := range c.Nodes() {
		if _, err := os.Stat(filepath.Join(n.DataDir, shard.SharedLogFile)); err != nil {
			t.Fatalf("%s: the shared store: %v", n.ID, err)
		}
		if _, err := os.Stat(filepath.Join(n.DataDir, "shards", "0", "raft.db")); !os.IsNotExist(err) {
			t.Fatalf("%s: a per-shard raft.db with the shared store (stat: %v)", n.ID, err)
		}
	}
	for s := range c.Shards() {
		setupMerchant(t, c, s, fmt.Sprintf("m%d", s), 0, 2, 1000)
	}
	leader := c.WaitForLeader(t, 0)
	lagger := follower(t, c, 0, leader)
	c.WaitApplied(t, 0, leader.Group(0).FSM().LastIndex())
	lagged := lagger.Group(0).Info().LastIndex
	c.Kill(t, lagger.Index)

	// Write to every shard at once until shard 0's live replicas have
	// compacted their logs past what the lagger has.
	for i := 0; ; i++ {
		done := make(chan struct{}, shards)
		for s := range c.Shards() {
			go func() {
				defer func() { done <- struct{}{} }()
				c.Propose(t, s, consult(fmt.Sprintf("m%d", s), fmt.Sprintf("b%d", i)))
			}()
		}
		for range shards {
			<-done
		}
		compacted := true
		for _, n := range c.Live() {
			first, err := n.Group(0).FirstLogIndex()
			if err != nil {
				t.Fatalf("%s: FirstIndex: %v", n.ID, err)
			}
			compacted = compacted && first > lagged+1
		}
		if compacted && i > 2*threshold {
			break
		}
		if i > 20*threshold {
			t.Fatalf("logs not compacted past index %d after %d entries", lagged, i)
		}
	}
	for _, n := range c.Live() {
		st, ok := n.Host().SharedLogStats()
		if !ok || st.Commits == 0 || st.Entries == 0 {
			t.Fatalf("%s: shared store stats %+v, %v; want commits", n.ID, st, ok)
		}
		t.Logf("%s: %d writes in %d commits, %.2f shards per commit", n.ID, st.Writes, st.Commits, float64(st.Shards)/float64(st.Commits))
	}
	c.Restart(t, lagger.Index)
	before := map[uint32][]byte{}
	for s := range c.Shards() {
		before[s], _ = c.WaitConverged(t, s)
	}
	if got := c.Node(lagger.Index).Group(0).SnapshotIndex(); got <= lagged {
		t.Fatalf("%s caught up without a snapshot past its last index %d (snapshot index %d)", lagger.ID, lagged, got)
	}

	for _, n := range c.Nodes() {
		c.Kill(t, n.Index)
	}
	for _, n := range c.Nodes() {
		c.Restart(t, n.Index)
	}
	for _, n := range c.Nodes() {
		for s := range c.Shards() {
			if has, err := n.Host().HasState(s); err != nil || !has {
				t.Fatalf("%s: HasState(%d) = %v, %v after restart; want true", n.ID, s, has, err)
			}
		}
	}
	for s := range c.Shards() {
		c.WaitForLeader(t, s)
		after, index := c.WaitConverged(t, s)
		if !bytes.Equal(before[s], after) {
			t.Fatalf("shard %d: state at index %d differs after the restart", s, index)
		}
		c.Propose(t, s, consult(fmt.Sprintf("m%d", s), "after-restart"))
		c.WaitConverged(t, s)
	}
}

// newSharedHost opens a Host on dir without a cluster around it.
func newSharedHost(t *testing.T, dir string, shared bool) (*shard.Host, error) {
	h, _, err := newSharedHostAddr(t, dir, shared)
	return h, err
}

func newSharedHostAddr(t *testing.T, dir string, shared bool) (*shard.Host, string, error) {
	t.Helper()
	mux := newMux(t)
	h, err := shard.NewHost(shard.HostConfig{NodeID: "n", DataDir: dir, Mux: mux, Raft: shard.FastTiming(),
		TickInterval: -1, SharedLog: shared, Logger: slog.New(slog.DiscardHandler)})
	return h, mux.Addr().String(), err
}

// TestSharedLogDropAndHasState: a dropped shard's log goes with it, a
// shard never written has no state, and a Drop interrupted between the
// directory and the log leaves nothing a later Open would pick up.
func TestSharedLogDropAndHasState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h, addr, err := newSharedHostAddr(t, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for s := range uint32(3) {
		g, err := h.Open(s)
		if err != nil {
			t.Fatal(err)
		}
		if has, err := h.HasState(s); err != nil || has {
			t.Fatalf("HasState(%d) of a new replica = %v, %v; want false", s, has, err)
		}
		if s == 0 {
			continue
		}
		if err := g.Bootstrap([]raft.Server{{ID: "n", Address: raft.ServerAddress(addr)}}); err != nil {
			t.Fatalf("Bootstrap(%d): %v", s, err)
		}
		if has, err := h.HasState(s); err != nil || !has {
			t.Fatalf("HasState(%d) after bootstrap = %v, %v; want true", s, has, err)
		}
	}
	if err := h.Drop(1); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	if has, err := h.HasState(1); err != nil || has {
		t.Fatalf("HasState(1) after Drop = %v, %v; want false", has, err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := sharedlog.Open(filepath.Join(dir, shard.SharedLogFile), sharedlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// raft stores CurrentTerm 0 when it starts, so shard 0 has a bucket
	// (and still no state: term 0, no log).
	if got, err := st.Shards(); err != nil || !slices.Equal(got, []uint32{0, 2}) {
		t.Fatalf("shards in the shared store after dropping 1 = %v, %v; want [0 2]", got, err)
	}
	st.Close()

	// A Drop interrupted after deleting shard 2's directory: its log is
	// still in the shared store, and must not come back.
	if err := os.RemoveAll(filepath.Join(dir, "shards", "2")); err != nil {
		t.Fatal(err)
	}
	h2, err := newSharedHost(t, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, err := h2.Open(1); err != nil {
		t.Fatalf("Open after Drop: %v", err)
	}
	if has, _ := h2.HasState(1); has {
		t.Fatal("a dropped shard reopened with state")
	}
	if stored, _ := h2.Stored(); !slices.Equal(stored, []uint32{0, 1}) {
		t.Fatalf("Stored = %v; want [0 1]", stored)
	}
	if has, err := h2.HasState(2); err != nil || has {
		t.Fatalf("HasState(2) with no directory = %v, %v; want false", has, err)
	}
	g, err := h2.Open(2)
	if err != nil {
		t.Fatal(err)
	}
	if last := g.Info().LastIndex; last != 0 {
		t.Fatalf("shard 2 reopened after an interrupted Drop with log up to %d; want an empty log", last)
	}
	if has, _ := h2.HasState(2); has {
		t.Fatal("shard 2 reopened after an interrupted Drop with state")
	}
}

// TestSharedLogRefusesTheOtherKindOfDataDir: switching a data dir between
// per-shard files and the shared store would lose every replica's term and
// vote, so the Host refuses.
func TestSharedLogRefusesTheOtherKindOfDataDir(t *testing.T) {
	t.Parallel()
	perShard := t.TempDir()
	h, err := newSharedHost(t, perShard, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Open(0); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if h, err := newSharedHost(t, perShard, true); err == nil {
		h.Close()
		t.Fatal("a shared-log Host started on a data dir with a per-shard raft.db")
	}
	if _, err := os.Stat(filepath.Join(perShard, shard.SharedLogFile)); !os.IsNotExist(err) {
		t.Fatalf("the refused Host left %s behind (stat: %v)", shard.SharedLogFile, err)
	}
	if shared, found, err := shard.DataDirLogStore(perShard); err != nil || shared || !found {
		t.Fatalf("shard.DataDirLogStore(per-shard dir) = %v, %v, %v; want false, true, nil", shared, found, err)
	}

	shared := t.TempDir()
	h, err = newSharedHost(t, shared, true)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if shared, found, err := shard.DataDirLogStore(shared); err != nil || !shared || !found {
		t.Fatalf("shard.DataDirLogStore(shared dir) = %v, %v, %v; want true, true, nil", shared, found, err)
	}
	if _, found, err := shard.DataDirLogStore(t.TempDir()); err != nil || found {
		t.Fatalf("shard.DataDirLogStore(empty dir): found %v, %v", found, err)
	}
	if h, err := newSharedHost(t, shared, false); err == nil {
		h.Close()
		t.Fatal("a per-shard Host started on a data dir with the shared store")
	}
}
