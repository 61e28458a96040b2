package shard_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// slowDetection has a heartbeat timeout long enough that raft's own
// election cannot come first: a follower waits 3–6 s of silence before it
// stands, a fast election takes milliseconds.
var slowDetection = shard.RaftTiming{
	HeartbeatTimeout:   3 * time.Second,
	ElectionTimeout:    3 * time.Second,
	LeaderLeaseTimeout: time.Second,
	CommitTimeout:      5 * time.Millisecond,
}

// When a leader's node goes away (its port closes, as when its process is
// killed), the followers start an election at once instead of waiting out
// the heartbeat timeout: one election per shard it led, by one voter, and
// the shard keeps everything it acknowledged.
func TestLeaderGoneStartsElectionAtOnce(t *testing.T) {
	timing := slowDetection
	const shards = 4
	c := shardtest.NewCluster(t, 3, shards, shardtest.WithTiming(timing), shardtest.WithTickInterval(-1))
	for s := range uint32(shards) {
		setupMerchant(t, c, s, fmt.Sprintf("m%d", s), 0, 2, 5)
	}

	// Kill the node that leads shard 0 and count the shards it led.
	victim := c.Leader(0)
	led := 0
	for s := range uint32(shards) {
		if c.Leader(s) == victim {
			led++
		}
	}
	killed := time.Now()
	c.Kill(t, victim.Index)
	for s := range uint32(shards) {
		c.WaitForNewLeader(t, s, victim)
	}
	t.Logf("%s led %d of %d shards; every shard had a new leader %v after the kill (heartbeat timeout %v)",
		victim.ID, led, shards, time.Since(killed), timing.HeartbeatTimeout)

	var started uint64
	for _, n := range c.Live() {
		started += n.Host().FastElections()
	}
	if started != uint64(led) {
		t.Fatalf("survivors started %d elections on the leader's node going away, want %d (one per shard it led)", started, led)
	}
	for s := range uint32(shards) {
		c.Propose(t, s, consult(fmt.Sprintf("m%d", s), "b1"))
		c.WaitConverged(t, s)
	}
}

// failingStore fails every append while failing is set: a follower that
// keeps answering RPCs but falls behind.
type failingStore struct {
	shard.Store
	failing atomic.Bool
}

func (s *failingStore) StoreLogs(ls []*raft.Log) error {
	if s.failing.Load() {
		return errors.New("test: appends failing")
	}
	return s.Store.StoreLogs(ls)
}

func (s *failingStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// When the first voter in turn is behind, the other refuses it and must
// stand itself at once, before its turn — although the refused vote
// request, of a newer term, made it forget its old leader.
func TestLeaderGoneFirstVoterBehind(t *testing.T) {
	firstVoterBehind(t, 0)
}

// As above, but the first voter, behind, stands before the other has heard
// that the leader's node is gone: its refused vote request has made the
// other forget the leader when the report comes. The other must still
// stand at once, not wait out its heartbeat timeout.
func TestLeaderGoneFirstVoterBehindReportLate(t *testing.T) {
	firstVoterBehind(t, 300*time.Millisecond)
}

// firstVoterBehind kills the leader (node2) of a one-shard cluster whose
// first voter in turn (node0) misses a committed entry, node1 hearing of
// the death late by lateReport, and checks that node1 wins at once.
func firstVoterBehind(t *testing.T, lateReport time.Duration) {
	timing := slowDetection
	var mu sync.Mutex
	stores := map[string]*failingStore{}
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTiming(timing), shardtest.WithTickInterval(-1),
		shardtest.WithConfig(func(cfg *shard.HostConfig) {
			id := cfg.NodeID
			cfg.OpenStore = func(dir string, s uint32) (shard.Store, error) {
				st, err := shard.BoltStore(dir, s)
				if err != nil {
					return nil, err
				}
				fs := &failingStore{Store: st}
				mu.Lock()
				stores[id] = fs
				mu.Unlock()
				return fs, nil
			}
		}))
	setupMerchant(t, c, 0, "m", 0, 2, 5)

	// node2 leads; node0, first in turn after it, falls behind.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	shardtest.Eventually(t, 30*time.Second, func() error {
		if l := c.Leader(0); l != nil && l.ID == "node2" {
			return nil
		}
		if l := c.Leader(0); l != nil {
			if err := l.Group(0).TransferLeadership(ctx, "node2"); err != nil {
				return err
			}
		}
		return fmt.Errorf("node2 does not lead yet")
	})
	mu.Lock()
	behind := stores["node0"]
	mu.Unlock()
	behind.failing.Store(true)
	c.Propose(t, 0, consult("m", "b1")) // committed by node1 and node2 only
	if lateReport > 0 {
		c.Node(1).Host().DelayPeerReports(lateReport)
	}

	c.Kill(t, 2)
	nl := c.WaitForNewLeader(t, 0, c.Node(2))
	behind.failing.Store(false)
	if nl.ID != "node1" {
		t.Fatalf("new leader %s, want node1 (node0 misses a committed entry)", nl.ID)
	}
	if n := c.Node(1).Host().FastElections(); n == 0 {
		t.Fatalf("node1 started no election on the report; it won only after its heartbeat timeout")
	}
	if n := c.Node(1).Host().FastElectionsEarly(); n != 1 {
		t.Fatalf("node1 stood early %d times, want 1: having refused node0's vote (its log behind), it must not wait for its turn (%v) or its heartbeat timeout",
			n, timing.HeartbeatTimeout/2)
	}
	t.Logf("fast elections: node0 %d, node1 %d", c.Node(0).Host().FastElections(), c.Node(1).Host().FastElections())
	c.Propose(t, 0, consult("m", "b2"))
	c.WaitConverged(t, 0)
}

// A call made while no leader is known waits for the election instead of
// failing at once: the caller gets the result, or the new leader's name.
func TestProposeWaitsForElection(t *testing.T) {
	// No leader for the first 1–2 s (a follower's first timeout), and the
	// wait (heartbeat + election timeout = 4 s) outlasts it.
	timing := shard.RaftTiming{
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    3 * time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
	}
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTiming(timing), shardtest.WithTickInterval(-1), shardtest.WithoutBootstrap())
	c.Bootstrap(t, 0, c.Nodes())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Node(0).Group(0).Propose(ctx, consult("m", "b1"))
	t.Logf("Propose on a replica of a shard with no leader yet answered after %v: %v", time.Since(start), err)
	var nle *shard.NotLeaderError
	switch {
	case err == nil: // node0 won the election
	case errors.As(err, &nle) && nle.LeaderID != "":
	default:
		t.Fatalf("got %v, want a result or a NotLeaderError naming the new leader", err)
	}
	if err := c.Node(1).Group(0).LinearizableRead(ctx); err != nil && !(errors.As(err, &nle) && nle.LeaderID != "") {
		t.Fatalf("LinearizableRead: got %v, want nil or a NotLeaderError naming the leader", err)
	}
}

// A TimeoutNow a replica sent itself is dropped if its term moved on before
// raft took it (it granted another voter's vote, or followed a new leader
// meanwhile), or if a vote request it could grant arrived since it decided:
// standing then would depose that leader. Sent in the term it decided in,
// it starts an election.
func TestStaleSelfTimeoutNowDropped(t *testing.T) {
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1))
	leader := c.WaitForLeader(t, 0)
	f := follower(t, c, 0, leader)
	term := f.Group(0).CurrentTerm()

	err := f.Group(0).StandAsIn(term - 1)
	if err == nil || !strings.Contains(err.Error(), "election moved on") {
		t.Fatalf("TimeoutNow decided in term %d, sent in term %d: %v, want it refused", term-1, term, err)
	}
	if c.Leader(0) != leader || f.Group(0).CurrentTerm() != term {
		t.Fatalf("after a refused TimeoutNow: leader %s term %d, want %s still leading in term %d",
			c.Leader(0).ID, f.Group(0).CurrentTerm(), leader.ID, term)
	}

	// A vote request it could grant, of a newer term, arrives after the
	// decision and before the TimeoutNow: raft may not have taken its term
	// yet, but the TimeoutNow is refused all the same.
	idx, _ := f.Group(0).LastLog()
	f.Group(0).DecideToStand(term)
	// Grantable whatever f appends meanwhile (the new leader's first entry
	// of its term may still be on its way): a log ahead of f's, ending in
	// the current term.
	f.Group(0).VoteRequestArrives(term+1, idx+100, term)
	if err := f.Group(0).SendStand(); err == nil || !strings.Contains(err.Error(), "election moved on") {
		t.Fatalf("TimeoutNow after a grantable vote request arrived: %v, want it refused", err)
	}
	// One it could not grant (the candidate's log empty, behind any) does
	// not stop it.
	f.Group(0).DecideToStand(term)
	f.Group(0).VoteRequestArrives(term+1, 0, 0)
	if err := f.Group(0).SendStand(); err != nil {
		t.Fatalf("TimeoutNow in the term it was decided in, after a vote request it could not grant: %v", err)
	}
	// f stood: the term moved. (Who wins depends on whose log is longest.)
	shardtest.Eventually(t, shardtest.WaitTimeout, func() error {
		if got := f.Group(0).CurrentTerm(); got <= term {
			return fmt.Errorf("after its TimeoutNow: term %d, want more than %d", got, term)
		}
		return nil
	})
	c.WaitForLeader(t, 0)
}
