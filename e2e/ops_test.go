package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/e2e/cluster"
	"github.com/frontdeskhq/frontdesk/node"
)

// The operations tests: nodes join by gossip, die and are replaced, come
// back, and are drained, while a client keeps working. Nodes run with
// --dead-after 3s so that a dead node is replaced quickly.

const (
	opsShards = 16
	opsRepl   = 3
)

var opsArgs = []string{"--dead-after", "3s"}

func opsClient(t *testing.T, ctx context.Context, c *cluster.Local) *client.Client {
	t.Helper()
	cl, err := client.New(ctx, c.APIAddrs(), client.WithRetry(20*time.Millisecond, 200*time.Millisecond),
		client.WithCallTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// checkDisks fails unless every running node holds on disk exactly the
// shards placement gives it: nodes that stood in for others shed theirs.
func checkDisks(t *testing.T, c *cluster.Local, p node.Placement) {
	t.Helper()
	for i, nd := range c.Nodes {
		if !c.Running(i) {
			continue
		}
		var want []uint32
		for s := range p {
			if p.Has(uint32(s), nd.ID) {
				want = append(want, uint32(s))
			}
		}
		if got := c.StoredShards(i); !slices.Equal(got, want) {
			t.Fatalf("%s has shards %v on disk, placement gives it %v", nd.ID, got, want)
		}
	}
}

// TestGrowUnderTraffic grows a cluster from 3 to 4 to 5 nodes by gossip
// (--join, no --bootstrap-expect) while a client keeps consulting. After
// each step every shard has 3 voters on the placement's nodes and leaders
// are spread within one of even; the client sees no failed call and no
// acknowledged session is lost.
func TestGrowUnderTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts frontdeskd processes")
	}
	c := cluster.StartLocal(t, 3, cluster.Options{Shards: opsShards, Args: opsArgs})
	c.WaitReady(60 * time.Second)
	c.WaitPlaced(c.IDs(), opsRepl, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := opsClient(t, ctx, c)
	tr := startOpsTraffic(t, ctx, cl, 8, 2)
	tr.waitCalls(t, 20)

	for range 2 {
		start := time.Now()
		i := c.AddNode(60 * time.Second)
		l := c.WaitPlaced(c.IDs(), opsRepl, 90*time.Second)
		calls, failed := tr.progress()
		t.Logf("%s joined: placement reached in %v; leaders per node %v; %d calls so far, %d failed",
			c.Nodes[i].ID, time.Since(start).Round(time.Millisecond), l.LeaderCounts(), calls, failed)
		tr.waitCalls(t, 20)
	}
	tr.stopAndCheck(t, ctx)
	checkDisks(t, c, node.Place(opsShards, c.IDs(), opsRepl))
}

// TestNodeDeathHeals kills one node of five and keeps it dead: after
// --dead-after every shard it held gets a new voter on a live node and
// returns to 3 voters (the time to heal is logged). Restarted, the node
// rejoins, placement gives it its shards back, and the nodes that stood in
// for it delete their copies.
func TestNodeDeathHeals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts frontdeskd processes")
	}
	c := cluster.StartLocal(t, 5, cluster.Options{Shards: opsShards, Args: opsArgs})
	c.WaitReady(60 * time.Second)
	all := c.IDs()
	c.WaitPlaced(all, opsRepl, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := opsClient(t, ctx, c)
	tr := startOpsTraffic(t, ctx, cl, 8, 2)
	tr.waitCalls(t, 20)

	const victim = 2
	held := c.StoredShards(victim)
	killed := time.Now()
	c.Kill(victim)
	live := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == c.Nodes[victim].ID })
	var detected time.Duration
	eventually(t, 60*time.Second, func() error {
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if n.Id == c.Nodes[victim].ID && n.State == "dead" {
				detected = time.Since(killed)
				return nil
			}
		}
		return fmt.Errorf("gossip does not report %s dead yet", c.Nodes[victim].ID)
	})
	c.WaitPlaced(live, opsRepl, 90*time.Second)
	t.Logf("%s (voter of %d shards) killed: gossip reported it dead after %v; every shard back to %d live voters after %v (--dead-after 3s after that, then catch-up)",
		c.Nodes[victim].ID, len(held), detected.Round(time.Millisecond), opsRepl, time.Since(killed).Round(time.Millisecond))
	tr.waitCalls(t, 20)

	restarted := time.Now()
	c.Start(victim)
	c.WaitPlaced(all, opsRepl, 90*time.Second)
	t.Logf("%s restarted: placement over all five reached again after %v", c.Nodes[victim].ID, time.Since(restarted).Round(time.Millisecond))
	tr.stopAndCheck(t, ctx)
	checkDisks(t, c, node.Place(opsShards, all, opsRepl))
}

// TestDrainUnderTraffic drains one node of four while a client keeps
// consulting, then stops it: no client call fails, and the three others
// hold every shard.
func TestDrainUnderTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts frontdeskd processes")
	}
	c := cluster.StartLocal(t, 4, cluster.Options{Shards: opsShards, Args: opsArgs})
	c.WaitReady(60 * time.Second)
	all := c.IDs()
	c.WaitPlaced(all, opsRepl, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := opsClient(t, ctx, c)
	tr := startOpsTraffic(t, ctx, cl, 8, 2)
	tr.waitCalls(t, 20)

	const drained = 1
	start := time.Now()
	c.Drain(ctx, cl, drained, 90*time.Second)
	t.Logf("%s drained in %v", c.Nodes[drained].ID, time.Since(start).Round(time.Millisecond))
	if got := c.StoredShards(drained); len(got) != 0 {
		t.Fatalf("drained %s still has shards %v on disk", c.Nodes[drained].ID, got)
	}
	c.Stop(drained)
	tr.waitCalls(t, 20)
	rest := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == c.Nodes[drained].ID })
	c.WaitPlaced(rest, opsRepl, 60*time.Second)
	tr.stopAndCheck(t, ctx)
}
