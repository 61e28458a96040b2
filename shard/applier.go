package shard

import (
	"io"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// applier is the raft.BatchingFSM raft drives: the shard's fsm.FSM, plus a
// wakeup for linearizable reads waiting for the FSM to reach an index.
type applier struct {
	*fsm.FSM
	applied notifier
}

var _ raft.BatchingFSM = (*applier)(nil)

func (a *applier) Apply(l *raft.Log) any {
	r := answer(a.FSM.Apply(l))
	a.applied.notify()
	return r
}

func (a *applier) ApplyBatch(logs []*raft.Log) []any {
	r := a.FSM.ApplyBatch(logs)
	for i := range r {
		r[i] = answer(r[i])
	}
	a.applied.notify()
	return r
}

// entryResults is what a replica answers raft for an entry: the results of
// its commands, which the batcher that proposed it takes once (take).
//
// Why not the []*pb.Result itself: raft's log cache keeps a pointer into
// the future of each entry a leader appended (raft.go, dispatchLogs:
// logs[i] = &applyLog.log), so the future — and the answer stored in it —
// stays reachable for as long as the entry is among the logCacheSize
// latest: under W1 at 1,024 clients, a few thousand entries of ~30
// results each, with their strings, tens of MB of pointers for every
// collection to mark and kept for no one. take leaves the future holding
// this empty box.
type entryResults struct {
	results []*pb.Result
}

// take returns the results and lets go of them. Only the batcher that
// proposed the entry calls it, once, after the future has answered.
func (e *entryResults) take() []*pb.Result {
	r := e.results
	e.results = nil
	return r
}

// answer boxes a state machine answer for raft (see entryResults); nil
// (an entry that is not a command) stays nil.
func answer(v any) any {
	if rs, ok := v.([]*pb.Result); ok {
		return &entryResults{results: rs}
	}
	return v
}

func (a *applier) Restore(rc io.ReadCloser) error {
	err := a.FSM.Restore(rc)
	a.applied.notify()
	return err
}
