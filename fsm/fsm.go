package fsm

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
	"github.com/hashicorp/raft"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// EntryVersion is the only Entry envelope version this package applies.
const EntryVersion = 1

// Config sizes a shard's state machine. Zero values take the defaults.
type Config struct {
	// Shard is the shard's number; it is part of every session id.
	Shard uint32
	// MaxDedup bounds the request ids remembered for de-duplication (default
	// 100,000; at least 2, at most 2^30). See dedupTable for what is
	// guaranteed.
	MaxDedup int
	// DedupWindowMs forgets request ids older than this much log time (default 10 min).
	DedupWindowMs int64
	// MaxEvents bounds the event log (default 100,000).
	MaxEvents int
	// MaxEnded bounds the recently ended sessions kept for queries (default 10,000).
	MaxEnded int
}

func (c Config) withDefaults() Config {
	if c.MaxDedup <= 0 {
		c.MaxDedup = 100_000
	}
	c.MaxDedup = min(max(c.MaxDedup, 2), 1<<30) // a generation's slots are numbered by int32
	if c.DedupWindowMs <= 0 {
		c.DedupWindowMs = 10 * 60 * 1000
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = 100_000
	}
	if c.MaxEnded <= 0 {
		c.MaxEnded = 10_000
	}
	return c
}

// FSM is the replicated state machine of one shard. It implements
// raft.BatchingFSM.
//
// Concurrency: Apply, ApplyBatch, ApplyEntry, Snapshot and Restore must be
// called by one goroutine at a time (raft's FSM goroutine); queries may be
// called from any goroutine at any time and see the state between entries.
//
// Determinism: the result of applying a log depends on nothing but the log:
// no clock (time comes from each command), no randomness, no map order.
type FSM struct {
	cfg Config

	mu        sync.RWMutex
	merchants map[string]*merchant
	now       int64                // log time: max of the times of applied commands
	queueSeq  uint64               // arrival order in queues
	eventSeq  uint64               // seq of the last event
	lastIndex uint64               // last applied log index
	waits     *btree.BTreeG[timer] // QUEUED sessions with a max-wait deadline
	idles     *btree.BTreeG[timer] // BOT and ASSIGNED sessions with an idle deadline
	elevated  map[string]bool      // merchants whose surge level is above normal
	ended     endedStore           // the recently ended sessions, oldest first
	dedup     dedupTable
	events    eventRing
	notify    chan struct{} // closed and replaced when events are appended
	watched   atomic.Bool   // notify was handed to a reader since it was made

	cur applying // scratch for the entry being applied
}

// applying describes the entry being applied.
type applying struct {
	index    uint64
	now      int64
	sessions int // sessions created so far in this entry
	emitted  bool
}

// New returns an empty state machine.
func New(cfg Config) *FSM {
	f := &FSM{cfg: cfg.withDefaults()}
	f.reset()
	return f
}

func (f *FSM) reset() {
	f.merchants = map[string]*merchant{}
	f.now, f.queueSeq, f.eventSeq, f.lastIndex = 0, 0, 0, 0
	f.waits = btree.NewG(btreeDegree, timerLess)
	f.idles = btree.NewG(btreeDegree, timerLess)
	f.elevated = map[string]bool{}
	f.ended = newEndedStore()
	f.dedup = newDedupTable(f.cfg.MaxDedup)
	f.events.reset()
	if f.notify == nil {
		f.notify = make(chan struct{})
	}
}

// Apply applies one Raft log entry and returns []*pb.Result, one per command
// of the entry, in order. A log entry that does not decode panics: replicas
// must not diverge by skipping it. Results are read-only.
func (f *FSM) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	var e pb.Entry
	if err := e.UnmarshalVT(l.Data); err != nil {
		panic(fmt.Sprintf("fsm: undecodable log entry at index %d: %v", l.Index, err))
	}
	return f.ApplyEntry(l.Index, &e)
}

// ApplyBatch applies entries in order; see Apply.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	for i, l := range logs {
		out[i] = f.Apply(l)
	}
	return out
}

// ApplyEntry applies a decoded entry at a log index: the state machine
// without Raft, for tests, simulators and benchmarks. Commands are applied
// in order, one result each. A command that fails changes nothing.
func (f *FSM) ApplyEntry(index uint64, e *pb.Entry) []*pb.Result {
	if e.Version != EntryVersion {
		panic(fmt.Sprintf("fsm: log entry %d has envelope version %d; this build applies %d", index, e.Version, EntryVersion))
	}
	f.mu.Lock()
	f.cur = applying{index: index}
	results := make([]*pb.Result, len(e.Commands))
	for i, c := range e.Commands {
		results[i] = f.applyCommand(c)
	}
	if index > f.lastIndex {
		f.lastIndex = index
	}
	if f.cur.emitted && f.watched.Swap(false) {
		close(f.notify)
		f.notify = make(chan struct{})
	}
	f.mu.Unlock()
	return results
}

func (f *FSM) applyCommand(c *pb.Command) *pb.Result {
	if e := validate(c); e != nil {
		return errResult(e)
	}
	now := f.now
	if c.TimeUnixMs > now {
		now = c.TimeUnixMs
	}
	key := dedupKey{merchant: commandMerchant(c), request: c.RequestId}
	var h uint64
	if c.RequestId != "" {
		h = f.dedup.hash(key)
		if r, ok := f.dedup.get(h, key); ok {
			return r
		}
	}
	f.cur.now = now
	r, err := f.dispatch(c)
	if err != nil {
		return errResult(err)
	}
	f.now = now
	if c.RequestId != "" {
		f.dedup.put(h, key, now, r)
	}
	f.dedup.expire(now - f.cfg.DedupWindowMs)
	return r
}

func (f *FSM) dispatch(c *pb.Command) (*pb.Result, *Error) {
	switch b := c.Body.(type) {
	case *pb.Command_UpsertMerchant:
		return f.applyUpsertMerchant(b.UpsertMerchant)
	case *pb.Command_DeleteMerchant:
		return f.applyDeleteMerchant(b.DeleteMerchant)
	case *pb.Command_UpsertGroup:
		return f.applyUpsertGroup(b.UpsertGroup)
	case *pb.Command_DeleteGroup:
		return f.applyDeleteGroup(b.DeleteGroup)
	case *pb.Command_UpsertAgent:
		return f.applyUpsertAgent(b.UpsertAgent)
	case *pb.Command_DeleteAgent:
		return f.applyDeleteAgent(b.DeleteAgent)
	case *pb.Command_SetAgentStatus:
		return f.applySetAgentStatus(b.SetAgentStatus)
	case *pb.Command_Consult:
		return f.applyConsult(b.Consult)
	case *pb.Command_Escalate:
		return f.applyEscalate(b.Escalate)
	case *pb.Command_Transfer:
		return f.applyTransfer(b.Transfer)
	case *pb.Command_End:
		return f.applyEnd(b.End)
	case *pb.Command_FirstReply:
		return f.applyFirstReply(b.FirstReply)
	case *pb.Command_PullNext:
		return f.applyPullNext(b.PullNext)
	case *pb.Command_Tick:
		return f.applyTick()
	}
	return nil, &Error{Code: pb.ErrorCode_ERROR_CODE_UNKNOWN_COMMAND, Field: "body", Message: "unknown command body"}
}

// newSessionID derives a session id from the log: shard, index and the
// session's place in the entry, so every replica names it the same.
func (f *FSM) newSessionID() string {
	var buf [40]byte
	b := strconv.AppendUint(buf[:0], uint64(f.cfg.Shard), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, f.cur.index, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(f.cur.sessions), 10)
	f.cur.sessions++
	return string(b)
}

// Snapshot captures the state for raft; see snapshot.go.
var _ raft.BatchingFSM = (*FSM)(nil)
