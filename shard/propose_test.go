package shard_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

func consult(m, buyer string) *pb.Command {
	return shardtest.Command(m+"/consult/"+buyer, &pb.Consult{MerchantId: m, BuyerId: buyer})
}

// setupMerchant creates merchant m on shard s with agents online.
func setupMerchant(t *testing.T, c *shardtest.Cluster, s uint32, m string, idleMs int64, agents int, limit uint32) {
	t.Helper()
	for i, r := range c.Propose(t, s, shardtest.MerchantSetup(m, idleMs, agents, limit)...) {
		if err := fsm.ResultError(r); err != nil {
			t.Fatalf("shard %d: setting up %s, command %d: %v", s, m, i, err)
		}
	}
}

func follower(t *testing.T, c *shardtest.Cluster, s uint32, leader *shardtest.Node) *shardtest.Node {
	t.Helper()
	for _, n := range c.Live() {
		if n != leader {
			return n
		}
	}
	t.Fatalf("shard %d: no running follower", s)
	return nil
}

func TestProposeOnFollowerIsNotLeader(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1)
	leader := c.WaitForLeader(t, 0)
	f := follower(t, c, 0, leader)
	// The follower learns the leader with the first heartbeat.
	shardtest.Eventually(t, shardtest.WaitTimeout, func() error {
		if id := f.Group(0).Info().LeaderID; id != leader.ID {
			return fmt.Errorf("%s knows leader %q, want %s", f.ID, id, leader.ID)
		}
		return nil
	})
	before := f.Group(0).Info().LastIndex
	_, err := f.Group(0).Propose(context.Background(), consult("m", "b1"))
	var nl *shard.NotLeaderError
	if !errors.As(err, &nl) || !errors.Is(err, shard.ErrNotLeader) || errors.Is(err, shard.ErrNoLeader) {
		t.Fatalf("Propose on follower %s: got %v, want a *NotLeaderError naming the leader", f.ID, err)
	}
	if nl.LeaderID != leader.ID || nl.LeaderAddr != leader.Addr {
		t.Fatalf("NotLeaderError names %s at %s, want %s at %s", nl.LeaderID, nl.LeaderAddr, leader.ID, leader.Addr)
	}
	if errors.Is(err, shard.ErrIndeterminate) {
		t.Fatalf("a refused proposal must not be indeterminate: %v", err)
	}
	if after := f.Group(0).Info().LastIndex; after != before {
		t.Fatalf("refused proposal changed the follower's log: last index %d → %d", before, after)
	}
}

func TestProposeStampsLeaderTime(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1))
	setupMerchant(t, c, 0, "m", 0, 1, 5)
	g := c.WaitForLeader(t, 0).Group(0)

	before := time.Now().UnixMilli()
	stamped := consult("m", "b1")
	if _, err := g.Propose(context.Background(), stamped); err != nil {
		t.Fatalf("Propose: %v", err)
	}
	after := time.Now().UnixMilli()
	if stamped.TimeUnixMs < before || stamped.TimeUnixMs > after {
		t.Fatalf("command stamped %d, want the leader's clock in [%d, %d]", stamped.TimeUnixMs, before, after)
	}
	sess, err := g.FSM().BuyerSession("m", "b1")
	if err != nil {
		t.Fatalf("BuyerSession: %v", err)
	}
	full, err := g.FSM().Session("m", sess.SessionId)
	if err != nil || full.CreatedMs != stamped.TimeUnixMs {
		t.Fatalf("session created at %v (err %v), want the stamped time %d", full.GetCreatedMs(), err, stamped.TimeUnixMs)
	}

	// A command that carries a time keeps it (the state machine never goes
	// back in time: it uses the larger of its clock and the command's).
	future := stamped.TimeUnixMs + 60_000
	explicit := consult("m", "b2")
	explicit.TimeUnixMs = future
	if _, err := g.Propose(context.Background(), explicit); err != nil {
		t.Fatalf("Propose: %v", err)
	}
	if explicit.TimeUnixMs != future || g.FSM().NowMs() != future {
		t.Fatalf("command time %d, state machine time %d; want both %d", explicit.TimeUnixMs, g.FSM().NowMs(), future)
	}
}

func TestProposeContextEndedBeforeSubmission(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1))
	g := c.WaitForLeader(t, 0).Group(0)
	before := g.Info().LastIndex

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, tc := range []struct {
		ctx  context.Context
		want error
	}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		_, err := g.Propose(tc.ctx, consult("m", "b1"))
		if !errors.Is(err, tc.want) || errors.Is(err, shard.ErrIndeterminate) {
			t.Errorf("Propose with an ended context: got %v, want %v and not indeterminate", err, tc.want)
		}
	}
	if after := g.Info().LastIndex; after != before {
		t.Fatalf("proposals not submitted changed the log: last index %d → %d", before, after)
	}
}

// gatedStore holds appends to the log while its gate is closed: a leader
// whose disk stalls, with its entries submitted but not yet committed.
type gatedStore struct {
	shard.Store
	mu   sync.Mutex
	gate chan struct{} // nil: open
	held chan struct{} // closed when an append waits at the closed gate
}

// close closes the gate and returns a channel closed once an append is
// held at it.
func (s *gatedStore) close() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate, s.held = make(chan struct{}), make(chan struct{})
	return s.held
}

func (s *gatedStore) open() {
	s.mu.Lock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
	s.mu.Unlock()
}

func (s *gatedStore) wait() {
	s.mu.Lock()
	g := s.gate
	if g != nil && s.held != nil {
		close(s.held)
		s.held = nil
	}
	s.mu.Unlock()
	if g != nil {
		<-g
	}
}

func (s *gatedStore) StoreLog(l *raft.Log) error {
	s.wait()
	return s.Store.StoreLog(l)
}

func (s *gatedStore) StoreLogs(ls []*raft.Log) error {
	s.wait()
	return s.Store.StoreLogs(ls)
}

// gatedCluster is a 3-node, 1-shard cluster whose stores can be gated.
func gatedCluster(t *testing.T) (*shardtest.Cluster, map[string]*gatedStore) {
	var mu sync.Mutex
	stores := map[string]*gatedStore{}
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1), shardtest.WithConfig(func(cfg *shard.HostConfig) {
		id := cfg.NodeID
		cfg.OpenStore = func(dir string, s uint32) (shard.Store, error) {
			st, err := shard.BoltStore(dir, s)
			if err != nil {
				return nil, err
			}
			gs := &gatedStore{Store: st}
			mu.Lock()
			stores[id] = gs
			mu.Unlock()
			return gs, nil
		}
	}))
	t.Cleanup(func() {
		for _, s := range stores {
			s.open()
		}
	})
	return c, stores
}

// TestProposeIndeterminateThenRetry submits a consult that cannot commit in
// time (the leader's disk stalls), gets ErrIndeterminate, and retries it with
// the same request id once the disk is back: the buyer gets exactly one
// session, whichever attempt committed.
func TestProposeIndeterminateThenRetry(t *testing.T) {
	t.Parallel()
	c, stores := gatedCluster(t)
	setupMerchant(t, c, 0, "m", 0, 2, 5)
	leader := c.WaitForLeader(t, 0)
	g := leader.Group(0)

	held := stores[leader.ID].close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	cmd := consult("m", "b1")
	_, err := g.Propose(ctx, cmd)
	if !errors.Is(err, shard.ErrIndeterminate) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Propose with a stalled disk: got %v, want ErrIndeterminate wrapping the deadline", err)
	}
	select {
	case <-held:
	default:
		t.Fatalf("Propose was indeterminate though its entry never reached the log store")
	}
	stores[leader.ID].open()

	retry := c.Propose(t, 0, cmd)[0]
	if err := fsm.ResultError(retry); err != nil || retry.Outcome != pb.Outcome_OUTCOME_ASSIGNED {
		t.Fatalf("retry: %v (err %v), want ASSIGNED", retry, err)
	}
	c.WaitConverged(t, 0)
	for _, n := range c.Nodes() {
		st, err := n.Group(0).FSM().Stats("m")
		if err != nil {
			t.Fatalf("%s: Stats: %v", n.ID, err)
		}
		if st.Consults != 1 {
			t.Fatalf("%s: %d consults counted, want exactly 1 after the retry", n.ID, st.Consults)
		}
	}
}

// TestProposeDuringClose: a proposal waiting when its replica closes is
// indeterminate (and says shut down); one made after Close is refused.
func TestProposeDuringClose(t *testing.T) {
	t.Parallel()
	c, stores := gatedCluster(t)
	leader := c.WaitForLeader(t, 0)
	g := leader.Group(0)
	// The leader's own barrier is committed: the next append is ours.
	if err := g.LinearizableRead(context.Background()); err != nil {
		t.Fatalf("LinearizableRead: %v", err)
	}

	held := stores[leader.ID].close()
	errc := make(chan error, 1)
	go func() {
		_, err := g.Propose(context.Background(), consult("m", "b1"))
		errc <- err
	}()
	select { // the entry is submitted: raft is appending it
	case <-held:
	case <-time.After(shardtest.WaitTimeout):
		t.Fatalf("the proposal never reached the leader's log store")
	}
	closed := make(chan error, 1)
	go func() { closed <- leader.Host().Close() }()
	err := <-errc
	if !errors.Is(err, shard.ErrIndeterminate) || !errors.Is(err, shard.ErrShutdown) {
		t.Fatalf("Propose waiting during Close: got %v, want ErrIndeterminate and ErrShutdown", err)
	}
	stores[leader.ID].open() // raft's shutdown waits for the stalled append
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := leader.Host().Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = g.Propose(context.Background(), consult("m", "b2"))
	if !errors.Is(err, shard.ErrShutdown) || errors.Is(err, shard.ErrIndeterminate) {
		t.Fatalf("Propose after Close: got %v, want ErrShutdown alone", err)
	}
	if err := g.LinearizableRead(context.Background()); !errors.Is(err, shard.ErrShutdown) {
		t.Fatalf("LinearizableRead after Close: got %v, want ErrShutdown", err)
	}
	if _, err := leader.Host().Open(0); !errors.Is(err, shard.ErrShutdown) {
		t.Fatalf("Open after Close: got %v, want ErrShutdown", err)
	}
}
