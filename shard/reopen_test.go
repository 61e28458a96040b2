package shard_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// fillAndStop gives each of the cluster's shards merchant "m" with
// sessions open sessions (assigned to 50 agents), snapshots every replica
// of node0, the cluster's only node, and stops it. It returns node0's data
// dir and, per shard, the id of one open session.
func fillAndStop(tb testing.TB, c *shardtest.Cluster, sessions int) (string, []string) {
	tb.Helper()
	n := c.Node(0)
	ids := make([]string, c.Shards())
	for s := range c.Shards() {
		for i, r := range c.Propose(tb, s, shardtest.MerchantSetup("m", 0, 50, uint32(sessions/50+1))...) {
			if err := fsm.ResultError(r); err != nil {
				tb.Fatalf("shard %d: setup command %d: %v", s, i, err)
			}
		}
		for i := 0; i < sessions; i += 500 {
			cmds := make([]*pb.Command, 0, 500)
			for j := i; j < min(i+500, sessions); j++ {
				cmds = append(cmds, consult("m", fmt.Sprintf("b%d", j)))
			}
			for _, r := range c.Propose(tb, s, cmds...) {
				if r.Outcome != pb.Outcome_OUTCOME_ASSIGNED {
					tb.Fatalf("shard %d: consult %v, want ASSIGNED", s, r)
				}
				ids[s] = r.SessionId
			}
		}
		if err := n.Group(s).TakeSnapshot(); err != nil {
			tb.Fatalf("shard %d: snapshot: %v", s, err)
		}
	}
	dir := n.DataDir
	c.Kill(tb, 0)
	return dir, ids
}

// TestOpenAll: OpenAll opens every replica it is given, several at a time,
// each with its state restored, and answers in the order asked (a repeated
// shard is opened once); after Close it opens nothing.
func TestOpenAll(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 1, 6, shardtest.WithTickInterval(-1))
	dir, ids := fillAndStop(t, c, 100)

	h := newHost(t, "node0", dir)
	ask := []uint32{5, 0, 3, 5, 1, 2, 4}
	groups, err := h.OpenAll(ask)
	if err != nil {
		t.Fatalf("OpenAll(%v): %v", ask, err)
	}
	if len(groups) != len(ask) || len(h.Groups()) != 6 {
		t.Fatalf("OpenAll(%v) gave %d groups, the host holds %d; want %d and 6", ask, len(groups), len(h.Groups()), len(ask))
	}
	for i, g := range groups {
		if g == nil {
			t.Fatalf("OpenAll(%v)[%d] is nil, want shard %d's group", ask, i, ask[i])
		}
		if g.Shard() != ask[i] {
			t.Fatalf("OpenAll(%v)[%d] is shard %d's group, want shard %d's", ask, i, g.Shard(), ask[i])
		}
		if again, _ := h.Group(ask[i]); again != g {
			t.Fatalf("shard %d: OpenAll's group is not the host's", ask[i])
		}
		s, err := g.FSM().Session("m", ids[g.Shard()])
		if err != nil || s.State != pb.SessionState_SESSION_STATE_ASSIGNED {
			t.Fatalf("shard %d after OpenAll: session %s = %v, %v; want it restored, ASSIGNED", g.Shard(), ids[g.Shard()], s, err)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := h.OpenAll([]uint32{0}); !errors.Is(err, shard.ErrShutdown) {
		t.Fatalf("OpenAll after Close: got %v, want ErrShutdown", err)
	}
}

// BenchmarkReopen: a node restarting with 16 shards of 10,000 open sessions
// each, every shard restored from its snapshot while it opens: the time to
// open them all, one by one and with OpenAll.
//
//	go test -run '^$' -bench Reopen -benchtime 5x ./shard/
func BenchmarkReopen(b *testing.B) {
	const shards = 16
	c := shardtest.NewCluster(b, 1, shards, shardtest.WithTickInterval(-1))
	dir, _ := fillAndStop(b, c, 10_000)
	all := make([]uint32, shards)
	for s := range all {
		all[s] = uint32(s)
	}
	for _, mode := range []string{"one-by-one", "OpenAll"} {
		b.Run(mode, func(b *testing.B) {
			var took time.Duration
			for range b.N {
				h := newHost(b, "node0", dir) // its Mux closes at cleanup
				var err error
				start := time.Now()
				if mode == "OpenAll" {
					_, err = h.OpenAll(all)
				} else {
					for _, s := range all {
						if _, err = h.Open(s); err != nil {
							break
						}
					}
				}
				took += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if err := h.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "ms/open-all")
		})
	}
}
