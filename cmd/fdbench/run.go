package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// target is what W1 runs against: a frontdesk cluster through the client,
// or the in-process raft ceiling. Its methods are called by many
// goroutines at once.
type target interface {
	// setup applies one merchant's setup commands, in order.
	setup(ctx context.Context, cmds []*pb.Command) error
	// consult opens a session for a new buyer. A BUSY answer is a result,
	// not an error.
	consult(ctx context.Context, merchant, buyer string) (*pb.Result, error)
	// end ends a session.
	end(ctx context.Context, merchant, session string) error
	// retries is how many attempts were repeated so far (redirects,
	// timeouts, no leader).
	retries() int64
	// shardOf is the shard (or raft group) of a merchant.
	shardOf(merchant string) uint32
}

// setupW1 creates W1's merchants through t, conc at a time.
func setupW1(ctx context.Context, t target, conc int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := atomic.Int64{}
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range max(conc, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= w1Merchants || ctx.Err() != nil {
					return
				}
				if err := t.setup(ctx, setupCommands(merchantID(k))); err != nil {
					once.Do(func() { first = fmt.Errorf("setting up %s: %w", merchantID(k), err); cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// runOpts shape one measured run.
type runOpts struct {
	conc      int
	warmup    time.Duration
	duration  time.Duration // 0: until stop is closed (or ctx ends)
	stop      <-chan struct{}
	surge     bool
	opTimeout time.Duration
	progress  io.Writer // a line per second; nil for none
	label     string    // printed at the start of progress lines
	// ack, if set, is told of every successful op: its shard and when it
	// started and ended (fdbench failover watches one shard with it).
	ack func(shard uint32, start, end time.Time)
	// onStart, if set, is called when the measured window begins.
	onStart func()
	// cpuProfile, if set, gets the process's CPU profile over the
	// measured window.
	cpuProfile io.Writer
	// events, if set, is told of every op slower than slowOp (and every
	// failed op), with its merchant, shard, start and end.
	events *slog.Logger
	// gcPercent, if positive, is this process's GC target during the run
	// (restored after).
	gcPercent int
}

// defaultGCPercent is --gc-percent's default: the runtime's own. fdbench
// shares the cores with the nodes it loads and its heap is small, so it
// collects many times a second, each time scanning every client
// goroutine's stack; 400 cut its CPU per op by 10–20% (BENCHMARKS.md,
// fourteenth session), which the nodes got at 1,024 clients (+6% ops/s)
// but not at 256 (−1.5%, p99 +2 ms on the means of four pairs, inside the
// noise). Not the default: figures stay comparable with earlier runs.
const defaultGCPercent = 0

// slowOp is how long an op takes before runOpts.events hears of it.
const slowOp = 250 * time.Millisecond

// tally is what a run counted; every field is updated atomically.
type tally struct {
	lat                    hist
	ops, errs              atomic.Int64
	assigned, queued, busy atomic.Int64
	other, ended           atomic.Int64
	lastErr                atomic.Pointer[error]
	cur                    atomic.Pointer[hist] // the current second's latencies
	curErrs                atomic.Int64
}

// measured is the outcome of runW1.
type measured struct {
	tally   *tally
	elapsed time.Duration // the measured window
	retries int64
}

// runW1 runs W1's client loop against t with o.conc workers: o.warmup
// unmeasured, then o.duration (or until ctx ends) measured. Ops count if
// they complete inside the measured window.
func runW1(ctx context.Context, t target, o runOpts) measured {
	if o.gcPercent > 0 {
		defer debug.SetGCPercent(debug.SetGCPercent(o.gcPercent))
	}
	z := newZipf(w1Merchants, w1ZipfS, w1ZipfV)
	ids := make([]string, w1Merchants)
	for k := range ids {
		ids[k] = merchantID(k)
	}
	run := strconv.FormatInt(time.Now().UnixNano()%1e12, 36) // buyers are new in every run
	ta := &tally{}
	ta.cur.Store(&hist{})

	began := time.Now()
	start := began.Add(o.warmup)
	var end time.Time
	if o.duration > 0 {
		end = start.Add(o.duration)
	}
	var stopAt atomic.Int64 // when o.stop closed, in Unix ns
	if o.stop != nil {
		watching := make(chan struct{})
		defer close(watching)
		go func() {
			select {
			case <-o.stop:
				stopAt.Store(time.Now().UnixNano())
			case <-watching:
			}
		}()
	}
	stopped := func(now time.Time) bool { s := stopAt.Load(); return s != 0 && now.UnixNano() >= s }
	done := func(now time.Time) bool {
		return ctx.Err() != nil || stopped(now) || (!end.IsZero() && !now.Before(end))
	}
	inWindow := func(now time.Time) bool {
		return !now.Before(start) && (end.IsZero() || now.Before(end)) && !stopped(now)
	}

	if o.cpuProfile != nil {
		onStart := o.onStart
		var profiling atomic.Bool
		o.onStart = func() {
			if err := pprof.StartCPUProfile(o.cpuProfile); err != nil {
				fmt.Fprintf(os.Stderr, "fdbench: --cpuprofile: %v\n", err)
			} else {
				profiling.Store(true)
			}
			if onStart != nil {
				onStart()
			}
		}
		defer func() {
			if profiling.Load() {
				pprof.StopCPUProfile()
			}
		}()
	}
	if o.onStart != nil {
		timer := time.AfterFunc(o.warmup, o.onStart)
		defer timer.Stop()
	}
	var retries0 atomic.Int64
	retries0.Store(t.retries())
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		progress(ta, t, o, began, start, stopProgress, &retries0)
	}()

	var wg sync.WaitGroup
	for w := range o.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(began.UnixNano()), uint64(w)))
			prefix := run + "-" + strconv.Itoa(w) + "-"
			for seq := 0; ; seq++ {
				now := time.Now()
				if done(now) {
					return
				}
				boost := 1.0
				if o.surge {
					boost = surgeBoost(now.Sub(start).Seconds())
				}
				m := ids[z.pick(rng.Float64(), surgeTop, boost)]
				shard := t.shardOf(m)
				octx, cancel := context.WithTimeout(ctx, o.opTimeout)
				res, err := t.consult(octx, m, prefix+strconv.Itoa(seq))
				cancel()
				after := time.Now()
				logOp(o.events, "consult", m, shard, now, after, err)
				if ta.count(now, after, err, inWindow(after)) {
					ta.outcome(res.GetOutcome())
					if o.ack != nil {
						o.ack(shard, now, after)
					}
				}
				if err != nil || res.GetOutcome() != pb.Outcome_OUTCOME_ASSIGNED || done(after) {
					continue
				}
				octx, cancel = context.WithTimeout(ctx, o.opTimeout)
				err = t.end(octx, m, res.SessionId)
				cancel()
				fin := time.Now()
				logOp(o.events, "end", m, shard, after, fin, err)
				if ta.count(after, fin, err, inWindow(fin)) {
					ta.ended.Add(1)
					if o.ack != nil {
						o.ack(shard, after, fin)
					}
				}
			}
		}()
	}
	wg.Wait()
	finished := time.Now()
	close(stopProgress)
	<-progressDone
	elapsed := o.duration
	switch {
	case stopAt.Load() != 0 && (end.IsZero() || stopAt.Load() < end.UnixNano()):
		elapsed = max(time.Unix(0, stopAt.Load()).Sub(start), 0)
	case end.IsZero() || finished.Before(end):
		elapsed = max(finished.Sub(start), 0)
	}
	return measured{tally: ta, elapsed: elapsed, retries: t.retries() - retries0.Load()}
}

// logOp tells events of an op that failed or was slow.
func logOp(events *slog.Logger, op, merchant string, shard uint32, start, end time.Time, err error) {
	if events == nil || (err == nil && end.Sub(start) < slowOp) {
		return
	}
	events.Info("slow op", slog.String("op", op), slog.String("merchant", merchant),
		slog.Uint64("shard", uint64(shard)), slog.Time("start", start),
		slog.Float64("ms", ms(end.Sub(start))), slog.Any("err", err))
}

// count records one op that started at from and ended at to; it reports
// whether the op succeeded and falls in the measured window. Ops of the
// warm-up only show in the progress line.
func (ta *tally) count(from, to time.Time, err error, measured bool) bool {
	if err != nil {
		ta.curErrs.Add(1)
		if measured {
			ta.errs.Add(1)
			ta.lastErr.Store(&err)
		}
		return false
	}
	d := to.Sub(from)
	ta.cur.Load().record(d)
	if !measured {
		return false
	}
	ta.ops.Add(1)
	ta.lat.record(d)
	return true
}

func (ta *tally) outcome(o pb.Outcome) {
	switch o {
	case pb.Outcome_OUTCOME_ASSIGNED:
		ta.assigned.Add(1)
	case pb.Outcome_OUTCOME_QUEUED:
		ta.queued.Add(1)
	case pb.Outcome_OUTCOME_BUSY:
		ta.busy.Add(1)
	default:
		ta.other.Add(1)
	}
}

// progress prints a line every second until stop: the last second's ops/s
// and p99, and the errors and retries so far.
func progress(ta *tally, t target, o runOpts, began, start time.Time, stop <-chan struct{}, retries0 *atomic.Int64) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	last := began
	warm := o.warmup > 0
	for {
		select {
		case <-stop:
			return
		case now := <-tk.C:
			h := ta.cur.Swap(&hist{})
			errs := ta.curErrs.Swap(0)
			if warm && !now.Before(start) {
				warm = false
				retries0.Store(t.retries()) // retries of the warm-up do not count
			}
			if o.progress == nil {
				last = now
				continue
			}
			phase := ""
			if now.Before(start) {
				phase = " (warm-up)"
			}
			rate := float64(h.count()) / now.Sub(last).Seconds()
			fmt.Fprintf(o.progress, "%s%5.0fs  ops/s %7.0f  p99 %7.2fms  errors %d (+%d)  retries %d%s\n",
				o.label, now.Sub(began).Seconds(), rate, ms(h.percentile(0.99)),
				ta.errs.Load(), errs, t.retries()-retries0.Load(), phase)
			last = now
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
