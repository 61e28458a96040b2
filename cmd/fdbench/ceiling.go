package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
)

// ceiling is the stack's own ceiling: plain hashicorp/raft groups of three
// voters in this process, talking real TCP on loopback, each voter with a
// raft-boltdb/v2 store (fsync on every append) and a file snapshot store in
// a temporary directory, applying the project's fsm. Every command is one
// raft.Apply: no RPC, no frontdesk shard layer, no batching of our own.
// Merchants map onto groups as they map onto shards.
type ceiling struct {
	commandTarget // its apply is ceiling.apply

	dir     string
	groups  []*ceilingGroup
	retried atomic.Int64
}

type ceilingGroup struct {
	voters []*ceilingVoter
	leader atomic.Pointer[raft.Raft]
}

type ceilingVoter struct {
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	trans *raft.NetworkTransport
}

// startCeiling starts groups raft groups of nodes voters each and waits
// for every group's leader.
func startCeiling(ctx context.Context, nodes, groups int) (_ *ceiling, err error) {
	dir, err := os.MkdirTemp("", "fdbench-ceiling-")
	if err != nil {
		return nil, err
	}
	c := &ceiling{dir: dir}
	c.commandTarget.apply = c.apply
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	for g := range groups {
		cg := &ceilingGroup{}
		c.groups = append(c.groups, cg)
		var servers []raft.Server
		for n := range nodes {
			v, err := startVoter(filepath.Join(dir, fmt.Sprintf("g%d-n%d", g, n)), uint32(g), fmt.Sprintf("node%d", n))
			if err != nil {
				return nil, err
			}
			cg.voters = append(cg.voters, v)
			servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("node%d", n)), Address: v.trans.LocalAddr()})
		}
		if err := cg.voters[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			return nil, fmt.Errorf("ceiling group %d: bootstrap: %w", g, err)
		}
	}
	for g, cg := range c.groups {
		if err := cg.findLeader(ctx, 30*time.Second); err != nil {
			return nil, fmt.Errorf("ceiling group %d: %w", g, err)
		}
	}
	return c, nil
}

// startVoter opens one voter the way shard opens a replica: raft-boltdb/v2
// behind a 512-entry log cache, two snapshots kept, and the raft
// configuration a default Host gives its replicas (shard.DefaultRaftConfig).
// Before that, the ceiling kept raft's default MaxAppendEntries (64, the
// shards' is 512): the leader's pipeline then sent at most 64 entries per
// replication round while 1,024 clients kept hundreds of one-command
// entries waiting, and the ceiling measured 16.2k ops/s at 0.9 of a core
// where it does 22.9k at 1.46 (BENCHMARKS.md, sixteenth session).
func startVoter(dir string, group uint32, id string) (*ceilingVoter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, err
	}
	cache, err := raft.NewLogCache(512, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	logger := hclog.NewNullLogger()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logger)
	if err != nil {
		store.Close()
		return nil, err
	}
	trans, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 2*time.Second, logger)
	if err != nil {
		store.Close()
		return nil, err
	}
	cfg := shard.DefaultRaftConfig(id)
	cfg.Logger = logger
	r, err := raft.NewRaft(cfg, fsm.New(fsm.Config{Shard: group}), cache, store, snaps, trans)
	if err != nil {
		trans.Close()
		store.Close()
		return nil, err
	}
	return &ceilingVoter{raft: r, store: store, trans: trans}, nil
}

// findLeader waits until one voter leads and remembers it.
func (g *ceilingGroup) findLeader(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, v := range g.voters {
			if v.raft.State() == raft.Leader {
				g.leader.Store(v.raft)
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *ceiling) close() {
	for _, g := range c.groups {
		for _, v := range g.voters {
			_ = v.raft.Shutdown().Error()
			_ = v.trans.Close()
			_ = v.store.Close()
		}
	}
	_ = os.RemoveAll(c.dir)
}

// apply commits cmds as one entry of the merchant's group and returns the
// results; a leader change is retried (same request ids).
func (c *ceiling) apply(ctx context.Context, merchant string, cmds ...*pb.Command) ([]*pb.Result, error) {
	now := time.Now().UnixMilli()
	for _, cmd := range cmds {
		cmd.TimeUnixMs = now
	}
	data, err := (&pb.Entry{Version: fsm.EntryVersion, Commands: cmds}).MarshalVT()
	if err != nil {
		return nil, err
	}
	g := c.groups[c.shardOf(merchant)]
	for {
		var timeout time.Duration
		if d, ok := ctx.Deadline(); ok {
			if timeout = time.Until(d); timeout <= 0 {
				return nil, context.DeadlineExceeded
			}
		}
		fut := g.leader.Load().Apply(data, timeout)
		err := fut.Error()
		if err == nil {
			res, ok := fut.Response().([]*pb.Result)
			if !ok || len(res) != len(cmds) {
				return nil, fmt.Errorf("fsm answered %T for %d commands", fut.Response(), len(cmds))
			}
			return res, nil
		}
		if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
			return nil, err
		}
		c.retried.Add(1)
		if err := g.findLeader(ctx, time.Until(deadlineOr(ctx, 10*time.Second))); err != nil {
			return nil, err
		}
	}
}

func deadlineOr(ctx context.Context, d time.Duration) time.Time {
	if t, ok := ctx.Deadline(); ok {
		return t
	}
	return time.Now().Add(d)
}

func (c *ceiling) retries() int64 { return c.retried.Load() }

func (c *ceiling) shardOf(merchant string) uint32 {
	return shard.ForMerchant(merchant, uint32(len(c.groups)))
}

// merchantOf is the merchant a setup command is about.
func merchantOf(c *pb.Command) string {
	switch b := c.Body.(type) {
	case *pb.Command_UpsertMerchant:
		return b.UpsertMerchant.MerchantId
	case *pb.Command_UpsertGroup:
		return b.UpsertGroup.MerchantId
	case *pb.Command_UpsertAgent:
		return b.UpsertAgent.MerchantId
	case *pb.Command_SetAgentStatus:
		return b.SetAgentStatus.MerchantId
	}
	return ""
}
