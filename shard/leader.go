package shard

import (
	"context"
	"time"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// watchLeadership runs the leader's background work (lead) for as long as
// this replica leads, restarting it for every new term of leadership. Raft's
// LeaderCh keeps only the latest transition, which is all this needs.
func (g *Group) watchLeadership() {
	defer g.wg.Done()
	stop := func() {}
	defer func() { stop() }()
	for {
		select {
		case <-g.closing:
			return
		case leader := <-g.raft.LeaderCh():
			stop()
			stop = func() {}
			if leader {
				stop = g.startLeading()
			}
		}
	}
}

// startLeading runs lead in the background and returns the function that
// stops it and waits for it to return.
func (g *Group) startLeading() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.lead(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// lead is the leader's background work, until ctx is cancelled. First a
// barrier commits an entry of the new term (so linearizable reads can use
// the commit index, see LinearizableRead) and brings the state machine up
// to date; then a Tick is proposed every TickInterval so that the state
// machine's timers (max wait, idle timeout, surge decay) fire without any
// client command. A failed tick is logged and the next one tried: ticks
// carry no request id and are idempotent in effect.
func (g *Group) lead(ctx context.Context) {
	term := g.raft.CurrentTerm()
	start := time.Now()
	if err := g.barrier(ctx); err != nil {
		if ctx.Err() == nil {
			g.log.Debug("barrier after election failed", "term", term, "err", err)
		}
	} else {
		g.log.Debug("leading", "term", term, "ready_in", time.Since(start))
	}
	if g.cfg.TickInterval < 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(g.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !g.app.FSM.TickDue(time.Now().UnixMilli()) {
			continue
		}
		g.tick(ctx)
	}
}

// tick proposes one Tick, giving up after a tick interval (at least a
// second): a late tick is worth no more than the next one.
func (g *Group) tick(leading context.Context) {
	ctx, cancel := context.WithTimeout(leading, max(g.cfg.TickInterval, time.Second))
	defer cancel()
	if _, err := g.Propose(ctx, tickCommand()); err != nil && leading.Err() == nil {
		g.log.Debug("tick failed", "err", err)
	}
}

func tickCommand() *pb.Command {
	return &pb.Command{Body: &pb.Command_Tick{Tick: &pb.Tick{}}}
}
