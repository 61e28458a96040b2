package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/node"
	"github.com/frontdeskhq/frontdesk/node/nodetest"
)

// storedShards lists the shard directories in a node's data dir.
func storedShards(t *testing.T, dataDir string) []uint32 {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "shards"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []uint32
	for _, e := range entries {
		if s, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			out = append(out, uint32(s))
		}
	}
	slices.Sort(out)
	return out
}

func placedOn(p node.Placement, id string) []uint32 {
	var out []uint32
	for s := range p {
		if p.Has(uint32(s), id) {
			out = append(out, uint32(s))
		}
	}
	return out
}

func without(ids []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == drop })
}

// TestPlacementLifecycle runs the life of an in-process cluster (8 shards,
// 3 voters each) through every placement change: it grows 3 → 4 → 5 by
// gossip; a killed node is replaced after --dead-after; a sixth node
// joins; the killed node returns, takes the replicas placement gives it
// and deletes the data of those it no longer holds; a node is drained.
// After each step every shard's voters are the placed ones, no node keeps
// a replica it does not vote in, and leaders are spread evenly.
func TestPlacementLifecycle(t *testing.T) {
	const shards = 8
	c := nodetest.Start(t, 3, nodetest.Options{Shards: shards, DeadAfter: 2 * time.Second})
	c.WaitPlaced(c.Running(), 20*time.Second)

	for range 2 {
		start := time.Now()
		i := c.Add()
		l := c.WaitPlaced(c.Running(), 30*time.Second)
		t.Logf("%s joined: placed in %v, leaders %v", c.Member(i).ID, time.Since(start), l.LeaderCounts())
	}

	// Kill a node holding more replicas than it will once a sixth joins,
	// so that when it returns it must shed some.
	five := c.Running()
	six := append(slices.Clone(five), "node6")
	victim := -1
	for i, id := range five {
		if len(placedOn(node.Place(shards, five, 3), id)) > len(placedOn(node.Place(shards, six, 3), id)) {
			victim = i
			break
		}
	}
	if victim < 0 {
		t.Fatal("no node loses replicas when node6 joins; pick other ids")
	}
	gone := c.Member(victim)
	held := storedShards(t, gone.DataDir)
	start := time.Now()
	c.Kill(victim)
	c.WaitPlaced(without(five, gone.ID), 30*time.Second)
	t.Logf("%s killed: replaced in %v (dead-after 2s)", gone.ID, time.Since(start))

	c.Add() // node6
	c.WaitPlaced(without(six, gone.ID), 30*time.Second)

	start = time.Now()
	c.Restart(victim)
	c.WaitPlaced(six, 30*time.Second)
	now := storedShards(t, gone.DataDir)
	want := placedOn(node.Place(shards, six, 3), gone.ID)
	if !slices.Equal(now, want) {
		t.Fatalf("%s after its return holds %v on disk, placement gives it %v", gone.ID, now, want)
	}
	var shed []uint32
	for _, s := range held {
		if !slices.Contains(now, s) {
			shed = append(shed, s)
		}
	}
	if len(shed) == 0 {
		t.Fatalf("%s held %v before it died and %v after it returned: it shed nothing", gone.ID, held, now)
	}
	t.Logf("%s returned: placed in %v, shed shards %v", gone.ID, time.Since(start), shed)

	// Drain node2 through the API of another node.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := client.New(ctx, c.APIAddrs())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.DrainNode(ctx, "nobody", false); err == nil {
		t.Fatal("draining an unknown node succeeded")
	}
	start = time.Now()
	nodetest.Eventually(t, 30*time.Second, func() error {
		res, err := cl.DrainNode(ctx, "node2", false)
		if err != nil {
			return err
		}
		if !res.Draining || !res.Drained {
			return fmt.Errorf("node2 still leads %d and holds %d replicas", res.Leaders, res.Replicas)
		}
		return nil
	})
	l := c.WaitPlaced(without(six, "node2"), 30*time.Second)
	t.Logf("node2 drained in %v; leaders %v", time.Since(start), l.LeaderCounts())
	if got := storedShards(t, c.Member(1).DataDir); len(got) != 0 {
		t.Fatalf("drained node2 still has shards %v on disk", got)
	}
}
