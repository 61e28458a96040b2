package shard_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// writer proposes consults to one shard, one buyer each, through whichever
// node leads, until stopped; it retries indeterminate outcomes with the same
// request id, as clients must, and records every acknowledged session.
type writer struct {
	c     *shardtest.Cluster
	shard uint32
	m     string

	mu    sync.Mutex
	acked map[string]string // buyer → session id
	errs  map[string]int    // kind of error → count
}

func (w *writer) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		buyer := fmt.Sprintf("w%d", i)
		cmd := consult(w.m, buyer)
		for ctx.Err() == nil {
			r, err := w.propose(ctx, cmd)
			if err == nil {
				w.mu.Lock()
				if fsm.ResultError(r) == nil {
					w.acked[buyer] = r.SessionId
				}
				w.mu.Unlock()
				break
			}
			w.mu.Lock()
			switch {
			case errors.Is(err, shard.ErrIndeterminate):
				w.errs["indeterminate"]++
			case errors.Is(err, shard.ErrNoLeader):
				w.errs["no leader"]++
			case errors.Is(err, shard.ErrNotLeader):
				w.errs["not leader"]++
			default:
				w.errs[err.Error()]++
			}
			w.mu.Unlock()
			time.Sleep(5 * time.Millisecond) // back off before retrying the same command
		}
	}
}

func (w *writer) propose(ctx context.Context, cmd *pb.Command) (*pb.Result, error) {
	n := w.c.Leader(w.shard)
	if n == nil {
		return nil, shard.ErrNoLeader
	}
	g := n.Group(w.shard)
	if g == nil {
		return nil, shard.ErrNoLeader
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	res, err := g.Propose(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

func (w *writer) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// TestLeaderFailover kills the node leading shard 0 while writers keep
// proposing to every shard: a new leader is elected, proposals succeed
// again, and no acknowledged consult is lost on any surviving replica.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	const shards = 2
	c := shardtest.NewCluster(t, 3, shards)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var writers []*writer
	var wg sync.WaitGroup
	for s := range c.Shards() {
		m := fmt.Sprintf("m%d", s)
		setupMerchant(t, c, s, m, 0, 4, 1000)
		w := &writer{c: c, shard: s, m: m, acked: map[string]string{}, errs: map[string]int{}}
		writers = append(writers, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	waitAcked := func(w *writer, n int) {
		t.Helper()
		shardtest.Eventually(t, shardtest.WaitTimeout, func() error {
			if got := w.ackedCount(); got < n {
				return fmt.Errorf("shard %d: %d consults acknowledged, want %d", w.shard, got, n)
			}
			return nil
		})
	}
	for _, w := range writers {
		waitAcked(w, 20)
	}

	victim := c.WaitForLeader(t, 0)
	start := time.Now()
	c.Kill(t, victim.Index)
	next := c.WaitForNewLeader(t, 0, victim)
	elected := time.Since(start)
	before := writers[0].ackedCount()
	waitAcked(writers[0], before+20)
	t.Logf("shard 0: %s killed; %s elected after %v; writes flowing again %v after the kill",
		victim.ID, next.ID, elected, time.Since(start))
	for _, w := range writers[1:] {
		waitAcked(w, w.ackedCount()+20)
	}
	cancel()
	wg.Wait()

	for _, w := range writers {
		t.Logf("shard %d: %d consults acknowledged; errors on the way: %v", w.shard, len(w.acked), w.errs)
		c.WaitConverged(t, w.shard)
		for _, n := range c.Live() {
			f := n.Group(w.shard).FSM()
			for buyer, sid := range w.acked {
				if s, err := f.Session(w.m, sid); err != nil || s.BuyerId != buyer {
					t.Fatalf("shard %d on %s: acknowledged session %s of %s lost: %v (err %v)", w.shard, n.ID, sid, buyer, s, err)
				}
			}
			st, err := f.Stats(w.m)
			if err != nil {
				t.Fatalf("Stats: %v", err)
			}
			if st.Consults < uint64(len(w.acked)) {
				t.Fatalf("shard %d on %s: %d consults counted, fewer than the %d acknowledged", w.shard, n.ID, st.Consults, len(w.acked))
			}
		}
	}
}

// TestFailoverLANTiming measures a leader failover with the default (LAN)
// timings, which the other tests replace with fast ones.
func TestFailoverLANTiming(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("takes seconds of LAN timeouts")
	}
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTiming(shard.LANTiming()))
	setupMerchant(t, c, 0, "m", 0, 1, 1000)
	var elections []string
	for round := range 2 {
		victim := c.WaitForLeader(t, 0)
		start := time.Now()
		c.Kill(t, victim.Index)
		killed := time.Since(start)
		c.WaitForNewLeader(t, 0, victim)
		took := time.Since(start)
		elections = append(elections, fmt.Sprintf("%v (kill took %v)", took.Round(time.Millisecond), killed.Round(time.Millisecond)))
		c.Propose(t, 0, consult("m", fmt.Sprintf("b%d", round)))
		// Detection takes one to three heartbeat timeouts (a follower's
		// timer is random in [1, 2) timeouts and checks the last contact),
		// the election a round trip, or another election timeout on a
		// split vote. SPEC: writes resume within a few seconds.
		if max := 3 * time.Second; took > max {
			t.Errorf("round %d: a new leader after %v, want under %v", round, took, max)
		}
		c.Restart(t, victim.Index)
		c.WaitConverged(t, 0)
	}
	t.Logf("LAN timing (%+v): new leader %v after killing the leader", shard.LANTiming(), elections)
}
