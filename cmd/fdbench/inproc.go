package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/sharedlog"
	"github.com/frontdeskhq/frontdesk/shard/transport"
)

// inproc is the replicated stack without the RPC front end: three
// shard.Hosts in this process (each with its own loopback mux port and data
// dir, default LAN timings and ticks, every shard a 3-voter raft group), W1
// proposed straight to each shard leader's Group.Propose — so it measures
// what the shard layer (batching included) does with concurrent commands,
// apart from HTTP/2 and Connect.
type inproc struct {
	commandTarget // its apply is inproc.propose

	dir     string
	hosts   []*shard.Host
	muxes   []*transport.Mux
	leaders []atomic.Pointer[shard.Group]
	retried atomic.Int64
}

func startInproc(ctx context.Context, nodes, shards int, sharedLog bool, linger time.Duration) (_ *inproc, err error) {
	dir, err := os.MkdirTemp("", "fdbench-inproc-")
	if err != nil {
		return nil, err
	}
	p := &inproc{dir: dir, leaders: make([]atomic.Pointer[shard.Group], shards)}
	p.commandTarget.apply = p.propose
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	logger := slog.New(slog.DiscardHandler)
	var voters []raft.Server
	for n := range nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		mux, err := transport.NewMux(ln, nil, transport.WithLogger(logger))
		if err != nil {
			ln.Close()
			return nil, err
		}
		p.muxes = append(p.muxes, mux)
		id := fmt.Sprintf("node%d", n)
		h, err := shard.NewHost(shard.HostConfig{NodeID: id, DataDir: filepath.Join(dir, id), Mux: mux, Logger: logger,
			SharedLog: sharedLog, SharedLogOptions: sharedlog.Options{MaxLinger: linger}})
		if err != nil {
			return nil, err
		}
		p.hosts = append(p.hosts, h)
		for s := range shards {
			if _, err := h.Open(uint32(s)); err != nil {
				return nil, err
			}
		}
		voters = append(voters, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(mux.Addr().String())})
	}
	// Every first voter bootstraps with the same configuration, as a
	// forming cluster does: a replica that starts without state and does
	// not bootstrap refuses votes until a leader has caught it up.
	for s := range shards {
		for _, h := range p.hosts {
			g, _ := h.Group(uint32(s))
			if err := g.Bootstrap(voters); err != nil {
				return nil, err
			}
		}
	}
	for s := range shards {
		if err := p.findLeader(ctx, uint32(s), 30*time.Second); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *inproc) findLeader(ctx context.Context, s uint32, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, h := range p.hosts {
			if g, ok := h.Group(s); ok && g.IsLeader() {
				p.leaders[s].Store(g)
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("shard %d: no leader", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *inproc) close() {
	for _, h := range p.hosts {
		_ = h.Close()
	}
	for _, m := range p.muxes {
		_ = m.Close()
	}
	_ = os.RemoveAll(p.dir)
}

// propose sends cmds to the merchant's shard leader, following leader
// changes (same request ids on every attempt).
func (p *inproc) propose(ctx context.Context, merchant string, cmds ...*pb.Command) ([]*pb.Result, error) {
	s := p.shardOf(merchant)
	for {
		res, err := p.leaders[s].Load().Propose(ctx, cmds...)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, shard.ErrNotLeader) && !errors.Is(err, shard.ErrIndeterminate) {
			return nil, err
		}
		p.retried.Add(1)
		if err := p.findLeader(ctx, s, time.Until(deadlineOr(ctx, 10*time.Second))); err != nil {
			return nil, err
		}
	}
}

// lastIndexes sums the last log index of every shard's leader: the raft
// entries written so far (commands, ticks, barriers, configuration).
func (p *inproc) lastIndexes() uint64 {
	var n uint64
	for s := range p.leaders {
		n += p.leaders[s].Load().Info().LastIndex
	}
	return n
}

// terms is each shard's highest term among the replicas.
func (p *inproc) terms() []uint64 {
	out := make([]uint64, len(p.leaders))
	for _, h := range p.hosts {
		for _, g := range h.Groups() {
			out[g.Shard()] = max(out[g.Shard()], g.Info().Term)
		}
	}
	return out
}

func (p *inproc) retries() int64 { return p.retried.Load() }

func (p *inproc) shardOf(merchant string) uint32 {
	return shard.ForMerchant(merchant, uint32(len(p.leaders)))
}

func runInprocCmd(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	start := time.Now()
	p, err := startInproc(ctx, 3, o.shards, o.sharedLog, o.sharedLinger)
	if err != nil {
		return err
	}
	defer p.close()
	if err := setupW1(ctx, p, o.setupConc); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "fdbench: inproc: 3 shard hosts × %d shards in-process, W1 set up in %v\n",
		o.shards, time.Since(start).Round(time.Millisecond))
	w := newWindow([]string{"fdbench (3 shard hosts in-process)"}, []int{os.Getpid()}, p.terms)
	var entries0 atomic.Uint64
	logs0 := make([]sharedlog.Stats, len(p.hosts))
	ro := runOpts{conc: o.conc, cpuProfile: o.cpuProfile, warmup: o.warmup, duration: o.duration, surge: o.surge,
		opTimeout: o.opTimeout, progress: stderr, label: "inproc ",
		onStart: func() {
			entries0.Store(p.lastIndexes())
			for i, h := range p.hosts {
				logs0[i], _ = h.SharedLogStats()
			}
			w.begin()
		}}
	m := runW1(ctx, p, ro)
	r := newResult("inproc", ro, o.shards, m)
	w.finish(&r, p.terms)
	r.RaftEntries = int64(p.lastIndexes() - entries0.Load())
	if r.RaftEntries > 0 {
		r.OpsPerEntry = float64(r.Ops) / float64(r.RaftEntries)
	}
	for i, h := range p.hosts {
		if st, ok := h.SharedLogStats(); ok && st.Commits > logs0[i].Commits {
			commits := float64(st.Commits - logs0[i].Commits)
			fmt.Fprintf(stderr, "fdbench: inproc: node%d shared log in the window: %.0f commits/s, %.2f shards and %.2f writes per commit\n", i,
				commits/o.duration.Seconds(), float64(st.Shards-logs0[i].Shards)/commits, float64(st.Writes-logs0[i].Writes)/commits)
		}
	}
	return output(o, stdout, r, r)
}
