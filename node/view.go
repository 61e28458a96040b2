package node

import (
	"slices"
	"sync"
	"time"
)

// view is one placement round's picture of the cluster, computed from this
// node's gossip: who may hold replicas, where each shard's voters should
// be, and which of them should lead.
type view struct {
	self      string
	now       time.Time
	deadAfter time.Duration
	uptime    time.Duration // since this node started
	shards    uint32
	members   map[string]member // by id
	placeable []string          // sorted
	placement Placement
	leaders   []string // preferred leader per shard
}

// placeable reports whether placement may give replicas to a member: it
// belongs to the formed cluster, is not draining, and is alive, suspected,
// or gone (dead or left) for less than deadAfter — a node that restarts
// within deadAfter keeps its replicas.
func (m member) placeable(now time.Time, deadAfter time.Duration) bool {
	if m.Shards == 0 || m.Draining {
		return false
	}
	switch m.State {
	case "alive", "suspect":
		return true
	}
	return !m.gone(now, deadAfter)
}

// view computes the current view; it is cheap (no I/O).
func (n *Node) view(now time.Time) *view {
	v := &view{self: n.cfg.ID, now: now, deadAfter: n.cfg.DeadAfter, uptime: now.Sub(n.started),
		shards: n.Shards(), members: map[string]member{}}
	ms, _ := n.members.snapshot() // sorted by id
	for _, m := range ms {
		if m.ID == v.self {
			m.Draining = n.draining.Load()
			m.Shards = v.shards
		}
		v.members[m.ID] = m
		if m.placeable(now, n.cfg.DeadAfter) {
			v.placeable = append(v.placeable, m.ID)
		}
	}
	v.placement, v.leaders = n.placeCache.get(v.shards, v.placeable, int(n.repl.Load()))
	return v
}

// placeCache keeps the last placement computed: it only changes with
// membership, and every status request and placement round asks for it.
type placeCache struct {
	mu        sync.Mutex
	shards    uint32
	nodes     []string
	repl      int
	placement Placement
	leaders   []string
}

// get returns the placement and preferred leaders; callers must not
// modify them.
func (c *placeCache) get(shards uint32, nodes []string, repl int) (Placement, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.placement == nil || c.shards != shards || c.repl != repl || !slices.Equal(c.nodes, nodes) {
		c.shards, c.nodes, c.repl = shards, slices.Clone(nodes), repl
		c.placement = Place(shards, nodes, repl)
		c.leaders = c.placement.Leaders()
	}
	return c.placement, c.leaders
}

// removable reports whether this view knows enough about node id to take
// a replica from it when placement does not want it there: a member of the
// formed cluster (alive, draining, or gone), or a node gossip has not
// mentioned for longer than deadAfter since this node started. A member
// seen alive but not yet known to belong to the cluster makes the view
// incomplete (gossip still spreading, e.g. while the cluster forms): a
// voter is not removed on the strength of such a view.
func (v *view) removable(id string) bool {
	m, ok := v.members[id]
	if !ok {
		return v.uptime > v.deadAfter
	}
	return m.Shards > 0 || m.gone(v.now, v.deadAfter)
}

// alive reports whether gossip sees node id as alive right now.
func (v *view) alive(id string) bool {
	m, ok := v.members[id]
	return ok && m.State == "alive"
}
