package shard_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// TestNonvoterCatchesUpThenPromoted adds a replica as a nonvoter (it gets
// the log but does not count for the quorum), promotes it with AddVoter,
// and checks that Configuration reports each step.
func TestNonvoterCatchesUpThenPromoted(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 4, 1, shardtest.WithoutBootstrap(), shardtest.WithTickInterval(-1))
	c.Bootstrap(t, 0, c.Nodes()[:3])
	setupMerchant(t, c, 0, "m", 0, 1, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leader := c.WaitForLeader(t, 0)
	newcomer := c.Node(3)

	if err := leader.Group(0).AddNonvoter(ctx, newcomer.ID, newcomer.Addr); err != nil {
		t.Fatalf("AddNonvoter(%s): %v", newcomer.ID, err)
	}
	cfg, err := leader.Group(0).Configuration()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Nonvoters(); !slices.Equal(got, []string{newcomer.ID}) {
		t.Fatalf("nonvoters after AddNonvoter: %v, want [%s]", got, newcomer.ID)
	}
	if len(cfg.Voters()) != 3 || !cfg.Has(newcomer.ID) {
		t.Fatalf("configuration after AddNonvoter: %+v", cfg.Servers)
	}
	// The nonvoter receives the log.
	c.Propose(t, 0, consult("m", "b1"))
	want := leader.Group(0).Info().CommitIndex
	shardtest.Eventually(t, 5*time.Second, func() error {
		if got := newcomer.Group(0).Info().AppliedIndex; got < want {
			return errors.New("nonvoter has not applied the log yet")
		}
		return nil
	})
	// A voter stays a voter: AddNonvoter only updates its address.
	if err := leader.Group(0).AddNonvoter(ctx, c.Node(1).ID, c.Node(1).Addr); err != nil {
		t.Fatalf("AddNonvoter on a voter: %v", err)
	}
	if err := leader.Group(0).AddVoter(ctx, newcomer.ID, newcomer.Addr); err != nil {
		t.Fatalf("AddVoter (promotion): %v", err)
	}
	cfg, _ = leader.Group(0).Configuration()
	if got := cfg.Voters(); len(got) != 4 || len(cfg.Nonvoters()) != 0 {
		t.Fatalf("after promotion: voters %v nonvoters %v, want 4 voters", got, cfg.Nonvoters())
	}
	c.WaitConverged(t, 0)
}

// TestDrop closes a replica and deletes its directory; Stored lists what is
// on disk, and the shard can be opened again, empty.
func TestDrop(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 1, 2, shardtest.WithTickInterval(-1))
	n := c.Node(0)
	h := n.Host()
	stored, err := h.Stored()
	if err != nil || !slices.Equal(stored, []uint32{0, 1}) {
		t.Fatalf("Stored: %v, %v; want [0 1]", stored, err)
	}
	if err := h.Drop(1); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	if _, ok := h.Group(1); ok {
		t.Fatal("group 1 still open after Drop")
	}
	if _, err := os.Stat(filepath.Join(n.DataDir, "shards", "1")); !os.IsNotExist(err) {
		t.Fatalf("shard 1's directory after Drop: %v", err)
	}
	if stored, _ := h.Stored(); !slices.Equal(stored, []uint32{0}) {
		t.Fatalf("Stored after Drop: %v, want [0]", stored)
	}
	if err := h.Drop(1); err != nil {
		t.Fatalf("Drop of a dropped shard: %v", err)
	}
	g, err := h.Open(1)
	if err != nil {
		t.Fatalf("Open after Drop: %v", err)
	}
	if has, _ := h.HasState(1); has {
		t.Fatal("a dropped shard reopened with state")
	}
	if _, err := g.Configuration(); err != nil {
		t.Fatalf("Configuration of a fresh replica: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Drop(0); !errors.Is(err, shard.ErrShutdown) {
		t.Fatalf("Drop after Close: %v, want ErrShutdown", err)
	}
}
