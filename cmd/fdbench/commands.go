package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// clusterEnv is a cluster under test: the client target, and the local
// processes if fdbench started them.
type clusterEnv struct {
	t       *clusterTarget
	local   *localCluster // nil with --addr
	logFile *os.File      // --client-log; nil without
}

func (e *clusterEnv) close() {
	if e.t != nil {
		e.t.close()
	}
	if e.local != nil {
		e.local.close()
	}
	if e.logFile != nil {
		e.logFile.Close()
	}
}

// openCluster starts the local nodes (--local) or reaches --addr, connects
// the client and creates W1's merchants.
func openCluster(ctx context.Context, o *options, stderr io.Writer) (_ *clusterEnv, err error) {
	e := &clusterEnv{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	addrs := o.addrs
	if o.local > 0 {
		start := time.Now()
		if e.local, err = startLocal(ctx, o.local, o.shards, o.frontdeskd, o.keep, o.nodeArgs); err != nil {
			return nil, err
		}
		addrs = e.local.apiAddrs()
		fmt.Fprintf(stderr, "fdbench: %d local nodes with %d shards ready in %v (data in %s)\n",
			o.local, o.shards, time.Since(start).Round(time.Millisecond), e.local.dir)
	}
	var logTo slog.Handler
	if o.clientLog != "" {
		if e.logFile, err = os.Create(o.clientLog); err != nil {
			return nil, fmt.Errorf("--client-log: %w", err)
		}
		logTo = slog.NewJSONHandler(e.logFile, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	if e.t, err = dialCluster(ctx, addrs, o.clients, o.batch, time.Second, logTo); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := setupW1(ctx, e.t, o.setupConc); err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "fdbench: W1's %d merchants set up in %v\n", w1Merchants, time.Since(start).Round(time.Millisecond))
	return e, nil
}

// window collects what is measured around a run's measured window: CPU
// and memory of the processes, the load average and shard terms.
type window struct {
	once   sync.Once
	begin  func()
	procs  *procWatch
	bench  *procWatch
	load0  string
	terms0 []uint64
}

func newWindow(names []string, pids []int, termsOf func() []uint64) *window {
	w := &window{}
	w.begin = func() {
		w.once.Do(func() {
			w.load0 = loadAvg()
			if termsOf != nil {
				w.terms0 = termsOf()
			}
			w.procs = watchProcs(names, pids)
			w.bench = watchProcs([]string{"fdbench"}, []int{os.Getpid()})
		})
	}
	return w
}

// finish ends the window and fills r.
func (w *window) finish(r *result, termsOf func() []uint64) {
	w.begin() // in case the run ended before its window began
	r.Nodes = w.procs.stop()
	r.Bench = w.bench.stop()[0]
	r.LoadAvg.Start, r.LoadAvg.End = w.load0, loadAvg()
	if termsOf != nil && w.terms0 != nil {
		if t1 := termsOf(); t1 != nil {
			n := termGrowth(w.terms0, t1)
			r.LeaderChanges = &n
		}
	}
}

// measureCluster runs W1 once against the cluster and reports it.
func measureCluster(ctx context.Context, o *options, e *clusterEnv, progress io.Writer, label string) result {
	var names []string
	var pids []int
	if e.local != nil {
		names, pids = e.local.pids()
	}
	termsOf := func() []uint64 {
		tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		t, _ := terms(tctx, e.t.addrs)
		return t
	}
	commits := func() uint64 {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return commitSum(cctx, e.t.addrs)
	}
	w := newWindow(names, pids, termsOf)
	var commits0 atomic.Uint64
	ro := runOpts{conc: o.conc, cpuProfile: o.cpuProfile, warmup: o.warmup, duration: o.duration, surge: o.surge,
		opTimeout: o.opTimeout, progress: progress, label: label, events: e.t.events, gcPercent: o.gcPercent,
		onStart: func() { commits0.Store(commits()); w.begin() }}
	m := runW1(ctx, e.t, ro)
	r := newResult("w1", ro, int(e.t.cl.Shards()), m)
	r.Clients = len(e.t.all)
	r.Batch = e.t.batch
	w.finish(&r, termsOf)
	if c0, c1 := commits0.Load(), commits(); c0 > 0 && c1 > c0 {
		r.RaftEntries = int64(c1 - c0)
		r.OpsPerEntry = float64(r.Ops) / float64(r.RaftEntries)
	}
	return r
}

// openCeiling starts the in-process raft cluster and sets W1 up on it.
func openCeiling(ctx context.Context, o *options, stderr io.Writer) (*ceiling, error) {
	start := time.Now()
	c, err := startCeiling(ctx, 3, o.groups)
	if err != nil {
		return nil, err
	}
	if err := setupW1(ctx, c, o.setupConc); err != nil {
		c.close()
		return nil, err
	}
	fmt.Fprintf(stderr, "fdbench: ceiling: %d raft group(s) × 3 voters in-process, W1 set up in %v\n",
		o.groups, time.Since(start).Round(time.Millisecond))
	return c, nil
}

// measureCeiling runs W1 once against the ceiling and reports it.
func measureCeiling(ctx context.Context, o *options, c *ceiling, progress io.Writer, label string) result {
	w := newWindow([]string{"fdbench (3 raft voters in-process)"}, []int{os.Getpid()}, nil)
	ro := runOpts{conc: o.conc, cpuProfile: o.cpuProfile, warmup: o.warmup, duration: o.duration, surge: o.surge,
		opTimeout: o.opTimeout, progress: progress, label: label, onStart: w.begin}
	m := runW1(ctx, c, ro)
	r := newResult("ceiling", ro, len(c.groups), m)
	w.finish(&r, nil)
	return r
}

func runW1Cmd(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	e, err := openCluster(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer e.close()
	r := measureCluster(ctx, o, e, stderr, "w1 ")
	return output(o, stdout, r, r)
}

func runCeilingCmd(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	c, err := openCeiling(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer c.close()
	r := measureCeiling(ctx, o, c, stderr, "ceiling ")
	return output(o, stdout, r, r)
}

// vsCeiling is the JSON of `fdbench w1 --vs-ceiling`.
type vsCeiling struct {
	W1        []result `json:"w1"`
	Ceiling   []result `json:"ceiling"`
	W1OpsPS   float64  `json:"w1_ops_per_sec"`
	CeilOpsPS float64  `json:"ceiling_ops_per_sec"`
	Ratio     float64  `json:"ratio"`
}

func runVsCeiling(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	e, err := openCluster(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer e.close()
	c, err := openCeiling(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer c.close()
	var v vsCeiling
	for i := range o.rounds {
		v.W1 = append(v.W1, measureCluster(ctx, o, e, stderr, fmt.Sprintf("w1 #%d ", i+1)))
		v.Ceiling = append(v.Ceiling, measureCeiling(ctx, o, c, stderr, fmt.Sprintf("ceiling #%d ", i+1)))
		if ctx.Err() != nil {
			break
		}
	}
	for i := range v.W1 {
		v.W1OpsPS += v.W1[i].OpsPerSec / float64(len(v.W1))
		v.CeilOpsPS += v.Ceiling[i].OpsPerSec / float64(len(v.Ceiling))
	}
	if v.CeilOpsPS > 0 {
		v.Ratio = v.W1OpsPS / v.CeilOpsPS
	}
	if o.json {
		return printJSON(stdout, v)
	}
	var all []result
	for i := range v.W1 {
		all = append(all, v.W1[i], v.Ceiling[i])
	}
	printTable(stdout, all...)
	fmt.Fprintf(stdout, "\nW1 %.0f ops/s vs ceiling %.0f ops/s (means over %d rounds): ratio %.2f\n",
		v.W1OpsPS, v.CeilOpsPS, len(v.W1), v.Ratio)
	return nil
}

// output prints v as JSON with --json, else r as a table.
func output(o *options, stdout io.Writer, v any, r result) error {
	if o.json {
		return printJSON(stdout, v)
	}
	printTable(stdout, r)
	return nil
}
