package shard_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// TestConcurrentProposalsShareEntries: 200 consults proposed at once on a
// real 3-node shard land in fewer entries than commands, and every caller
// gets the session of its own buyer; the replicas converge.
func TestConcurrentProposalsShareEntries(t *testing.T) {
	t.Parallel()
	// The default (LAN) timings, not the tests' fast ones: 200 proposals at
	// once under -race beside the package's other parallel clusters have
	// held the leader past FastTiming's 50 ms lease (CI, 4e599fe: "not
	// leader; no leader known"), and leadership is not what this tests.
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1), shardtest.WithTiming(shard.LANTiming()))
	setupMerchant(t, c, 0, "m", 0, 50, 5)
	g := c.WaitForLeader(t, 0).Group(0)
	before, stats0 := g.Info().LastIndex, g.BatchStats()

	const n = 200
	results := make([]*pb.Result, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var res []*pb.Result
			res, errs[i] = g.Propose(ctx, consult("m", fmt.Sprintf("b%03d", i)))
			if errs[i] == nil {
				results[i] = res[0]
			}
		}()
	}
	close(start)
	wg.Wait()

	for i := range n {
		buyer := fmt.Sprintf("b%03d", i)
		if errs[i] != nil {
			t.Fatalf("consult of %s: %v", buyer, errs[i])
		}
		if err := fsm.ResultError(results[i]); err != nil {
			t.Fatalf("consult of %s: %v", buyer, err)
		}
		own, err := g.FSM().BuyerSession("m", buyer)
		if err != nil {
			t.Fatalf("BuyerSession(%s): %v", buyer, err)
		}
		if own.SessionId != results[i].SessionId || own.Outcome != results[i].Outcome {
			t.Fatalf("caller of %s got session %s (%v); the buyer's session is %s (%v)",
				buyer, results[i].SessionId, results[i].Outcome, own.SessionId, own.Outcome)
		}
	}
	entries := g.Info().LastIndex - before
	st := g.BatchStats()
	t.Logf("%d consults in %d log entries; batcher: %d entries, %d commands",
		n, entries, st.Entries-stats0.Entries, st.Commands-stats0.Commands)
	if entries >= n {
		t.Fatalf("%d concurrent consults took %d log entries, want fewer than %d", n, entries, n)
	}
	if st.Commands-stats0.Commands != n {
		t.Fatalf("batcher counted %d commands, want %d", st.Commands-stats0.Commands, n)
	}
	c.WaitConverged(t, 0)
}

// TestLeaderLetsGoOfResults: once its callers have them, an entry's
// results are not kept alive by the leader. raft's log cache holds a
// pointer into the future of each recent entry, and the future holds the
// state machine's answer (shard/applier.go, entryResults); the results of
// every command of the last 512 entries stayed reachable.
func TestLeaderLetsGoOfResults(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1), shardtest.WithTiming(shard.LANTiming()))
	setupMerchant(t, c, 0, "m", 0, 50, 5)
	g := c.WaitForLeader(t, 0).Group(0)
	const n = 20
	var freed atomic.Int32
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := g.Propose(ctx, consult("m", fmt.Sprintf("b%03d", i)))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := fsm.ResultError(res[0]); err != nil {
			t.Fatal(err)
		}
		runtime.AddCleanup(res[0], func(struct{}) { freed.Add(1) }, struct{}{})
	}
	deadline := time.Now().Add(10 * time.Second)
	for freed.Load() < n && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := freed.Load(); got < n {
		t.Fatalf("%d of the %d results dropped by their callers were collected in 10 s of collections: the rest are still reachable", got, n)
	}
}

// TestCloseAfterConcurrentProposalsLeavesNoGoroutines: a cluster whose
// shards were proposed to concurrently (so the batchers packed entries)
// leaves no goroutine behind once closed. Not parallel: it counts the
// process's goroutines.
func TestCloseAfterConcurrentProposalsLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	c := shardtest.NewCluster(t, 3, 2, shardtest.WithTickInterval(20*time.Millisecond))
	for s := range uint32(2) {
		setupMerchant(t, c, s, fmt.Sprintf("m%d", s), 0, 5, 5)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := uint32(i % 2)
			c.Propose(t, s, consult(fmt.Sprintf("m%d", s), fmt.Sprintf("b%d", i)))
		}()
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	shardtest.Eventually(t, shardtest.WaitTimeout, func() error {
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			return fmt.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}
