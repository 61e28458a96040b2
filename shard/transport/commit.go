package transport

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// stampQuiet is how long no append may have gone to a follower before a
// heartbeat tells it the commit index: while appends flow they carry it.
const stampQuiet = 10 * time.Millisecond

// Telling idle followers the commit index with a heartbeat.
//
// hashicorp/raft's followers learn the commit index only from AppendEntries
// that carry it: the next append, or, once writes stop, the append an idle
// leader sends every CommitTimeout to each follower of each shard. That
// timer is most of what an idle node does (64 shards: half its CPU), yet
// bounds how far a follower trails the leader after the last write. So the
// leader's Transport tells the commit index itself, once per follower and
// burst of writes: the first heartbeat after the appends to that follower
// stopped (none for stampQuiet) carries LeaderCommitIndex, when that would
// teach the follower something, and a long CommitTimeout then costs no lag:
// a follower trails an idle leader by a heartbeat interval at most.
//
// Why that is safe without a consistency check (the heartbeat has no
// PrevLogEntry): the stamped index is at most the highest index the
// follower acknowledged to this leader in this term. The follower's log
// matches the leader's up to there (raft's log matching: it accepted
// those entries after checking their predecessor), and nothing in this
// term shortens that prefix again — only this leader sends appends in this
// term, and they agree with it. A follower that moved to a later term
// refuses the heartbeat; one that lost its log commits no further than its
// last index (raft takes the minimum). The follower answers it from its
// main loop (it is not a heartbeat to raft any more), like the append it
// replaces.

// commitStamp is what the leader knows of one follower in one term.
type commitStamp struct {
	term     uint64
	acked    uint64    // highest index the follower acknowledged in term
	told     uint64    // highest commit index it is known to have been told
	appended time.Time // when the last append was sent
}

// commitStamps tracks the followers of one shard's leader.
type commitStamps struct {
	mu     sync.Mutex
	commit func() uint64    // the leader's commit index; nil: no stamping
	now    func() time.Time // nil: time.Now
	peers  map[raft.ServerID]*commitStamp
}

// SetCommitIndex gives the Transport the local replica's commit index
// (raft.Raft.CommitIndex), which turns on telling idle followers the
// commit index with a heartbeat (commit.go).
func (t *Transport) SetCommitIndex(fn func() uint64) {
	t.stamps.mu.Lock()
	t.stamps.commit = fn
	t.stamps.mu.Unlock()
}

// peer returns the state of id in term, starting afresh in a new term.
// Called with mu held.
func (c *commitStamps) peer(id raft.ServerID, term uint64) *commitStamp {
	if c.peers == nil {
		c.peers = make(map[raft.ServerID]*commitStamp)
	}
	p := c.peers[id]
	if p == nil || p.term != term {
		p = &commitStamp{term: term}
		c.peers[id] = p
	}
	return p
}

// sending notes an append (not a heartbeat) about to go to id.
func (c *commitStamps) sending(id raft.ServerID, req *raft.AppendEntriesRequest) {
	c.mu.Lock()
	c.peer(id, req.Term).appended = c.clock()
	c.mu.Unlock()
}

// answered notes id's answer to an append.
func (c *commitStamps) answered(id raft.ServerID, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if !resp.Success || resp.Term != req.Term {
		return
	}
	last := req.PrevLogEntry
	if n := len(req.Entries); n > 0 {
		last = req.Entries[n-1].Index
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peer(id, req.Term)
	p.acked = max(p.acked, last)
	p.told = max(p.told, min(req.LeaderCommitIndex, last))
}

// stamp returns a copy of the heartbeat req carrying the commit index for
// id, or nil when the heartbeat should go as it is: no commit source, an
// append went to id in the last stampQuiet (appends carry the index), or id
// knows as much already.
func (c *commitStamps) stamp(id raft.ServerID, req *raft.AppendEntriesRequest) *raft.AppendEntriesRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.commit == nil {
		return nil
	}
	p := c.peer(id, req.Term)
	if c.clock().Sub(p.appended) < stampQuiet {
		return nil
	}
	idx := min(c.commit(), p.acked)
	if idx <= p.told {
		return nil
	}
	stamped := *req
	stamped.LeaderCommitIndex = idx
	return &stamped
}

func (c *commitStamps) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// told notes that id accepted a stamped heartbeat.
func (c *commitStamps) told(id raft.ServerID, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if !resp.Success || resp.Term != req.Term {
		return
	}
	c.mu.Lock()
	p := c.peer(id, req.Term)
	p.told = max(p.told, req.LeaderCommitIndex)
	c.mu.Unlock()
}
