package shard

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// MaxBatchCommands bounds the commands the batching proposer packs into
// one log entry. A single Propose call with more commands still gets an
// entry of its own: a call's commands are never split.
const MaxBatchCommands = 512

// MaxInflightEntries bounds the entries a group's batcher has submitted
// and raft has not answered yet (committed and applied, or failed); 0
// would mean no bound. With one, the calls that arrive while an entry is on
// its way (leader fsync, replication, a follower's fsync, apply) all go
// into the next entry. Measured in-process, 16 shards, W1 at 256 clients
// (BENCHMARKS.md): no bound 9.0k ops/s at 1.8 commands per entry; 1:
// 17.0k at 9.0; 2: 14.7k; 4: 12.2k.
const MaxInflightEntries = 1

// batcher is the proposer of every Group: it packs the commands of
// concurrent Propose calls into one Raft entry (one log write and fsync,
// one replication, one apply call for all of them) and hands each caller
// its own results.
//
// One goroutine per group (loop) takes the calls waiting in reqs, up to
// max commands, submits them as one entry with raft.Apply, and goes back
// for more. It submits the next entry only once raft has answered the
// previous one (see MaxInflightEntries), so calls pile up exactly while
// an entry is on its way, and a call arriving at an idle group is
// submitted at once: there is no fixed linger.
//
// Error contract (the same as one entry per call): an error of the entry
// fails every caller in it alike. A caller whose context ends before its
// call is taken gets "not submitted"; after, ErrIndeterminate — one
// caller's context never affects the others of its batch, and the entry's
// enqueue timeout is the latest deadline among them.
type batcher struct {
	g   *Group
	max int
	// slots holds a token per entry submitted and not yet answered by
	// raft; nil: no bound.
	slots  chan struct{}
	submit func(data []byte, timeout time.Duration) raft.ApplyFuture
	reqs   chan *proposal
	done   chan struct{} // closed when loop returns, after g.closing

	entries, commands atomic.Uint64 // submitted, for BatchStats
}

// proposal is one Propose call waiting for its results.
type proposal struct {
	ctx  context.Context
	cmds []*pb.Command
	res  chan proposed // buffered: the batcher never blocks on a caller
}

type proposed struct {
	results []*pb.Result
	err     error
}

// newBatcher starts g's batching loop; it submits through submit
// (raft.Apply) and stops when g.closing closes.
func newBatcher(g *Group, max, inflight int, submit func([]byte, time.Duration) raft.ApplyFuture) *batcher {
	b := &batcher{g: g, max: max, submit: submit, reqs: make(chan *proposal, max), done: make(chan struct{})}
	if inflight > 0 {
		b.slots = make(chan struct{}, inflight)
	}
	go b.loop()
	return b
}

func (b *batcher) propose(ctx context.Context, cmds []*pb.Command) ([]*pb.Result, error) {
	g := b.g
	if g.isClosing() { // before the select, which picks at random
		return nil, fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
	}
	p := &proposal{ctx: ctx, cmds: cmds, res: make(chan proposed, 1)}
	select {
	case b.reqs <- p:
	case <-ctx.Done():
		return nil, g.notSubmitted(ctx)
	case <-g.closing:
		return nil, fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
	}
	select {
	case r := <-p.res:
		return r.results, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w (shard %d): %w", ErrIndeterminate, g.shard, ctx.Err())
	case <-g.closing:
		return nil, fmt.Errorf("%w (shard %d): %w", ErrIndeterminate, g.shard, ErrShutdown)
	}
}

// wait returns once the loop has stopped (after g.closing closed).
func (b *batcher) wait() { <-b.done }

// loop forms batches until the group closes.
func (b *batcher) loop() {
	defer close(b.done)
	var batch []*proposal
	var carry *proposal // taken, but did not fit in the previous batch
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-b.reqs:
			case <-b.g.closing:
				return
			}
		}
		if b.slots != nil { // wait for a slot; calls pile up meanwhile
			select {
			case b.slots <- struct{}{}:
			case <-b.g.closing:
				return
			}
		}
		batch = batch[:0]
		n := 0
		add := func(p *proposal) {
			if p.ctx.Err() != nil { // gone before submission: leave it out
				p.res <- proposed{err: b.g.notSubmitted(p.ctx)}
				return
			}
			batch = append(batch, p)
			n += len(p.cmds)
		}
		add(first)
	drain:
		for n < b.max {
			select {
			case p := <-b.reqs:
				if n > 0 && n+len(p.cmds) > b.max {
					carry = p
					break drain
				}
				add(p)
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			b.send(batch, n)
		} else {
			b.release()
		}
	}
}

// send submits batch (n commands) as one entry and answers its callers
// when raft does.
func (b *batcher) send(batch []*proposal, n int) {
	g := b.g
	own := make([]*proposal, len(batch)) // batch is reused by loop
	copy(own, batch)
	fail := func(err error) {
		b.release()
		for _, p := range own {
			p.res <- proposed{err: err}
		}
	}
	cmds := own[0].cmds
	if len(own) > 1 {
		cmds = make([]*pb.Command, 0, n)
		for _, p := range own {
			cmds = append(cmds, p.cmds...)
		}
	}
	data, err := (&pb.Entry{Version: fsm.EntryVersion, Commands: cmds}).MarshalVT()
	if err != nil {
		fail(fmt.Errorf("shard %d: encoding entry: %w", g.shard, err))
		return
	}
	timeout, ok := latestTimeout(own)
	if !ok {
		b.release()
		for _, p := range own {
			p.res <- proposed{err: g.notSubmitted(p.ctx)}
		}
		return
	}
	fut := b.submit(data, timeout)
	b.entries.Add(1)
	b.commands.Add(uint64(n))
	go func() {
		if err := fut.Error(); err != nil {
			fail(g.writeErr(err))
			return
		}
		var results []*pb.Result
		box, ok := fut.Response().(*entryResults)
		if ok {
			results = box.take()
		}
		if !ok || len(results) != n {
			fail(fmt.Errorf("shard %d: state machine answered %T for %d commands", g.shard, fut.Response(), n))
			return
		}
		b.release()
		off := 0
		for _, p := range own {
			end := off + len(p.cmds)
			p.res <- proposed{results: results[off:end:end]}
			off = end
		}
	}()
}

// release returns the slot of an entry raft has answered.
func (b *batcher) release() {
	if b.slots != nil {
		<-b.slots
	}
}

// latestTimeout is how long raft may take to accept an entry for all of
// these callers: until the latest deadline, or without limit if one of
// them has none. It reports false if every deadline has passed.
func latestTimeout(ps []*proposal) (time.Duration, bool) {
	var latest time.Time
	for _, p := range ps {
		d, ok := p.ctx.Deadline()
		if !ok {
			return 0, true
		}
		if d.After(latest) {
			latest = d
		}
	}
	left := time.Until(latest)
	return left, left > 0
}

// BatchStats counts what a replica has submitted to Raft while it led:
// entries, and the commands in them. Commands/Entries is the mean batch.
type BatchStats struct {
	Entries, Commands uint64
}

// BatchStats returns the replica's proposal counters since it opened.
func (g *Group) BatchStats() BatchStats {
	b, ok := g.prop.(*batcher)
	if !ok {
		return BatchStats{}
	}
	return BatchStats{Entries: b.entries.Load(), Commands: b.commands.Load()}
}
