package shard

import (
	"io"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/fsm"
)

// applier is the raft.BatchingFSM raft drives: the shard's fsm.FSM, plus a
// wakeup for linearizable reads waiting for the FSM to reach an index.
type applier struct {
	*fsm.FSM
	applied notifier
}

var _ raft.BatchingFSM = (*applier)(nil)

func (a *applier) Apply(l *raft.Log) any {
	r := a.FSM.Apply(l)
	a.applied.notify()
	return r
}

func (a *applier) ApplyBatch(logs []*raft.Log) []any {
	r := a.FSM.ApplyBatch(logs)
	a.applied.notify()
	return r
}

func (a *applier) Restore(rc io.ReadCloser) error {
	err := a.FSM.Restore(rc)
	a.applied.notify()
	return err
}
