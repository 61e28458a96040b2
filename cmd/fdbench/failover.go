package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"
)

// failoverReport is the JSON of `fdbench failover`: W1 over the whole run
// (the calm phase and the kills), the unavailability windows of the
// killed shard, and the leader changes of the calm phase.
type failoverReport struct {
	result
	Shard      uint32      `json:"shard"`
	Kills      int         `json:"kills"`
	FailoverMs windowStats `json:"failover_ms"`
	// AllShards: the windows of every shard the killed node led at each
	// kill, the measured one included (a shard that serves few ops adds
	// the wait for its next op to its window).
	AllShards struct {
		Windows     windowStats `json:"failover_ms"`
		Unrecovered int         `json:"unrecovered"`
	} `json:"all_shards"`
	// Nodes and Bench (in result) are measured in the calm phase.
	// Unrecovered counts kills after which the shard served nothing
	// within 30 s (each is a 30,000 ms sample).
	Unrecovered int `json:"unrecovered"`
	// Calm is the phase without faults before the first kill: its
	// leader changes are spurious elections; its nodes' CPU and memory
	// are reported there (pids change with every restart afterwards).
	Calm struct {
		Seconds           float64     `json:"seconds"`
		SpuriousElections int64       `json:"spurious_elections"`
		Nodes             []procUsage `json:"nodes"`
	} `json:"calm"`
}

// recovery watches shards' ops for the first success after a kill: the
// measured shard, and every other shard the killed node led then.
type recovery struct {
	armed atomic.Int64   // the kill's time (Unix ns); 0: not armed
	watch []atomic.Bool  // by shard: watched for this kill
	back  []atomic.Int64 // by shard: end of the first op on it started after the kill
}

func newRecovery(shards int) *recovery {
	return &recovery{watch: make([]atomic.Bool, shards), back: make([]atomic.Int64, shards)}
}

func (r *recovery) ack(shard uint32, start, end time.Time) {
	k := r.armed.Load()
	if k == 0 || start.UnixNano() < k || int(shard) >= len(r.watch) || !r.watch[shard].Load() {
		return
	}
	r.back[shard].CompareAndSwap(0, end.UnixNano())
}

// arm starts watching shards for a kill at t.
func (r *recovery) arm(t time.Time, shards []uint32) {
	for _, s := range shards {
		r.back[s].Store(0)
		r.watch[s].Store(true)
	}
	r.armed.Store(t.UnixNano())
}

// disarm stops watching.
func (r *recovery) disarm() {
	r.armed.Store(0)
	for i := range r.watch {
		r.watch[i].Store(false)
	}
}

// wait returns, for each of shards, how long after killedAt it served
// again; a shard that did not within maxRecovery gets maxRecovery and
// unrecovered is true. It waits for all of them.
func (r *recovery) wait(ctx context.Context, killedAt time.Time, shards []uint32) (wins []time.Duration, unrecovered []bool) {
	wins, unrecovered = make([]time.Duration, len(shards)), make([]bool, len(shards))
	for {
		left := 0
		for i, s := range shards {
			if wins[i] != 0 {
				continue
			}
			if b := r.back[s].Load(); b != 0 {
				wins[i] = time.Unix(0, b).Sub(killedAt)
				continue
			}
			left++
		}
		if left == 0 {
			return wins, unrecovered
		}
		if time.Since(killedAt) > maxRecovery || ctx.Err() != nil {
			for i := range wins {
				if wins[i] == 0 {
					wins[i], unrecovered[i] = maxRecovery, true
				}
			}
			return wins, unrecovered
		}
		sleep(ctx, 2*time.Millisecond)
	}
}

// maxRecovery bounds the wait for a shard to serve again after a kill.
const maxRecovery = 30 * time.Second

func runFailoverCmd(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	e, err := openCluster(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer e.close()
	rep := failoverReport{Kills: o.kills}
	rep.Shard = e.t.shardOf(merchantID(0))
	if o.shard >= 0 {
		rep.Shard = uint32(o.shard)
	}
	rec := newRecovery(int(e.t.cl.Shards()))
	stop := make(chan struct{})
	ro := runOpts{conc: o.conc, cpuProfile: o.cpuProfile, warmup: o.warmup, surge: o.surge, opTimeout: o.opTimeout,
		progress: stderr, label: "failover ", ack: rec.ack, stop: stop, events: e.t.events, gcPercent: o.gcPercent}
	done := make(chan measured, 1)
	go func() { done <- runW1(ctx, e.t, ro) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	sleep(ctx, o.warmup)

	// Calm: W1 without faults; every term change is a spurious election.
	names, pids := e.local.pids()
	termsOf := func() []uint64 {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		t, _ := terms(tctx, e.t.addrs)
		return t
	}
	w := newWindow(names, pids, termsOf)
	w.begin()
	calmStart := time.Now()
	sleep(ctx, o.calm)
	var calm result
	w.finish(&calm, termsOf)
	rep.Calm.Seconds = time.Since(calmStart).Seconds()
	rep.Calm.Nodes = calm.Nodes
	if calm.LeaderChanges != nil {
		rep.Calm.SpuriousElections = *calm.LeaderChanges
	}
	fmt.Fprintf(stderr, "fdbench: calm phase: %d leader changes in %.0f s\n", rep.Calm.SpuriousElections, rep.Calm.Seconds)

	var windows, allWindows []time.Duration
	for k := 0; k < o.kills && ctx.Err() == nil; k++ {
		leader := -1
		for deadline := time.Now().Add(maxRecovery); leader < 0 && time.Now().Before(deadline) && ctx.Err() == nil; {
			if leader = e.local.leaderOf(ctx, rep.Shard); leader < 0 {
				sleep(ctx, 20*time.Millisecond)
			}
		}
		if leader < 0 {
			return fmt.Errorf("kill %d: shard %d has no leader", k+1, rep.Shard)
		}
		others := e.local.shardsLedBy(ctx, leader, rep.Shard)
		watched := append([]uint32{rep.Shard}, others...)
		killedAt := time.Now()
		rec.arm(killedAt, watched)
		e.local.kill(leader)
		e.t.events.Info("kill", slog.Int("kill", k+1), slog.String("node", e.local.nodes[leader].id),
			slog.String("api_addr", e.local.nodes[leader].api), slog.Time("at", killedAt),
			slog.Any("shards", watched))
		wins, lost := rec.wait(ctx, killedAt, watched)
		rec.disarm()
		for i, s := range watched {
			e.t.events.Info("served again", slog.Int("kill", k+1), slog.Uint64("shard", uint64(s)),
				slog.Float64("ms", ms(wins[i])), slog.Bool("unrecovered", lost[i]))
		}
		win := wins[0]
		if lost[0] {
			rep.Unrecovered++
		}
		windows = append(windows, win)
		worst, worstShard := time.Duration(0), uint32(0)
		for i, d := range wins[1:] {
			allWindows = append(allWindows, d)
			if lost[i+1] {
				rep.AllShards.Unrecovered++
			}
			if d > worst {
				worst, worstShard = d, others[i]
			}
		}
		fmt.Fprintf(stderr, "fdbench: kill %d: %s led shard %d; shard served again after %v",
			k+1, e.local.nodes[leader].id, rep.Shard, win.Round(time.Millisecond))
		if len(others) > 0 {
			fmt.Fprintf(stderr, "; of the %d other shards it led, the last (%d) after %v", len(others), worstShard, worst.Round(time.Millisecond))
		}
		fmt.Fprintln(stderr)
		if err := e.local.start(leader); err != nil {
			return err
		}
		if err := e.local.waitReady(ctx, 90*time.Second); err != nil {
			return err
		}
		sleep(ctx, o.interval)
	}
	close(stop)
	m := <-done
	rep.result = newResult("failover", ro, int(e.t.cl.Shards()), m)
	rep.Nodes, rep.Bench = calm.Nodes, calm.Bench // pids change with restarts: the calm phase's
	rep.LoadAvg.Start, rep.LoadAvg.End = w.load0, loadAvg()
	rep.FailoverMs = summarize(windows)
	allWindows = append(allWindows, windows...)
	rep.AllShards.Windows = summarize(allWindows)
	rep.AllShards.Unrecovered += rep.Unrecovered
	if o.json {
		return printJSON(stdout, rep)
	}
	printTable(stdout, rep.result)
	fmt.Fprintf(stdout, "\nshard %d, %d kills: failover p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d unrecovered within %v)\n",
		rep.Shard, len(windows), rep.FailoverMs.P50, rep.FailoverMs.P99, rep.FailoverMs.Max, rep.Unrecovered, maxRecovery)
	fmt.Fprintf(stdout, "samples ms: %v\n", rep.FailoverMs.Samples)
	fmt.Fprintf(stdout, "every shard the killed node led (%d windows): p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d unrecovered)\n",
		len(allWindows), rep.AllShards.Windows.P50, rep.AllShards.Windows.P99, rep.AllShards.Windows.Max, rep.AllShards.Unrecovered)
	fmt.Fprintf(stdout, "calm phase: %d leader changes in %.0f s\n", rep.Calm.SpuriousElections, rep.Calm.Seconds)
	return nil
}

// windowStats summarizes unavailability windows, in milliseconds.
type windowStats struct {
	P50     float64   `json:"p50"`
	P99     float64   `json:"p99"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples"`
}

func summarize(windows []time.Duration) windowStats {
	var st windowStats
	slices.Sort(windows)
	for _, d := range windows {
		st.Samples = append(st.Samples, ms(d))
	}
	if len(windows) > 0 {
		st.P50 = ms(quantile(windows, 0.5))
		st.P99 = ms(quantile(windows, 0.99))
		st.Max = ms(windows[len(windows)-1])
	}
	return st
}

// quantile is the nearest-rank q-quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
