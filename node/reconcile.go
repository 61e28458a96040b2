package node

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
)

// changeTimeout bounds one configuration change or leadership transfer.
const changeTimeout = 5 * time.Second

// reconciler moves the shards this node leads towards the placement, one
// change per shard and round. See DESIGN.md.
type reconciler struct {
	n *Node

	mu    sync.Mutex
	led   map[uint32]leadership // per shard: since when this node leads it
	marks map[replica]mark      // the leader's commit index last round

	lastPlaceable []string // for the log: placement's nodes last round
}

// leadership is a term this node has led a shard in, and since when (or
// since its last leadership transfer attempt).
type leadership struct {
	term  uint64
	since time.Time
}

// replica is one node's replica of one shard.
type replica struct {
	shard uint32
	id    string
}

// mark is the leader's term and commit index when it last looked at a
// replica's progress.
type mark struct {
	term, commit uint64
}

func newReconciler(n *Node) *reconciler {
	return &reconciler{n: n, led: map[uint32]leadership{}, marks: map[replica]mark{}}
}

// caughtUp reports whether a replica (its reported progress si, nil if it
// did not answer or holds no replica) has caught up with this leader: in
// the leader's term, it has applied everything the leader had committed
// when it last asked (a round earlier). A replica that is restoring a
// snapshot or replaying a long log is not; one merely a few entries behind
// is. A replica asked for the first time is not caught up yet.
func (r *reconciler) caughtUp(s uint32, id string, si *pb.ShardInfo, term, commit uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := replica{s, id}
	prev, seen := r.marks[key]
	r.marks[key] = mark{term: term, commit: commit}
	return seen && prev.term == term && si != nil && si.GetTerm() == term && si.GetAppliedIndex() >= prev.commit
}

// settled reports whether this node has led shard s in term long enough to
// hand the lead to the preferred leader.
func (r *reconciler) settled(s uint32, term uint64, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.led[s]
	if !ok || l.term != term {
		r.led[s] = leadership{term: term, since: now}
		return r.n.cfg.LeaderSettle <= 0
	}
	return now.Sub(l.since) >= r.n.cfg.LeaderSettle
}

// transferred restarts the settle time of shard s after a transfer attempt
// (it failed if this node still leads).
func (r *reconciler) transferred(s uint32, term uint64) {
	r.mu.Lock()
	r.led[s] = leadership{term: term, since: time.Now()}
	r.mu.Unlock()
}

// reconcile makes at most one change to g's shard, which this node leads.
func (r *reconciler) reconcile(ctx context.Context, v *view, sc *statusCache, g *shard.Group) {
	s := g.Shard()
	info := g.Info()
	if info.State != "Leader" || int(s) >= len(v.placement) || len(v.placement[s]) == 0 {
		return
	}
	// raft itself admits one configuration change at a time: a change
	// submitted while another commits waits for it.
	cfg, err := g.Configuration()
	if err != nil {
		return
	}
	progress := func(id string) *pb.ShardInfo { return sc.shard(ctx, id, s) }
	st := shardState{
		self:      v.self,
		want:      v.placement[s],
		preferred: v.leaders[s],
		cfg:       cfg,
		addrs:     map[string]string{},
		alive:     v.alive,
		removable: v.removable,
		caughtUp: func(id string) bool {
			return id == v.self || r.caughtUp(s, id, progress(id), info.Term, info.CommitIndex)
		},
		hasReplica: func(id string) bool { return id == v.self || progress(id) != nil },
		settled:    r.settled(s, info.Term, time.Now()),
	}
	for id, m := range v.members {
		if m.State == "alive" && m.RaftAddr != "" {
			st.addrs[id] = m.RaftAddr
		}
	}
	a := decide(st)
	if a.kind == actNone {
		if a.why != "" {
			r.n.log.Debug("placement: waiting", "shard", s, "why", a.why, "placed", st.want, "voters", cfg.Voters())
		}
		return
	}
	log := r.n.log.With("shard", s, "node", a.id, "why", a.why)
	cctx, cancel := context.WithTimeout(ctx, changeTimeout)
	defer cancel()
	switch a.kind {
	case actAddNonvoter:
		err = g.AddNonvoter(cctx, a.id, a.addr)
		log.Info("placement: added a replica as nonvoter; it catches up before it votes", "err", err)
	case actPromote:
		err = g.AddVoter(cctx, a.id, a.addr)
		log.Info("placement: promoted a caught-up replica to voter", "err", err)
	case actRemove:
		err = g.RemoveServer(cctx, a.id)
		log.Info("placement: removed a replica", "err", err)
	case actUpdateAddress:
		if slices.Contains(cfg.Voters(), a.id) {
			err = g.AddVoter(cctx, a.id, a.addr)
		} else {
			err = g.AddNonvoter(cctx, a.id, a.addr)
		}
		log.Info("placement: updated a replica's Raft address", "addr", a.addr, "err", err)
	case actTransfer:
		err = g.TransferLeadership(cctx, a.id)
		r.transferred(s, info.Term)
		log.Info("placement: handed the lead over", "err", err)
	}
}

// actionKind is what one reconciliation step does to a shard.
type actionKind int

const (
	actNone actionKind = iota
	actAddNonvoter
	actPromote
	actRemove
	actUpdateAddress
	actTransfer
)

// action is one step: kind, on which node (its Raft address when adding),
// and why, for the log.
type action struct {
	kind actionKind
	id   string
	addr string
	why  string
}

// shardState is what the leader of a shard knows when it decides the next
// step: the placement, the configuration, and answers about other nodes.
type shardState struct {
	self      string
	want      []string // the placement's voters
	preferred string   // the placement's preferred leader
	cfg       shard.Configuration
	addrs     map[string]string // Raft address of every alive member
	alive     func(id string) bool
	// removable: the view knows the node well enough to remove it from
	// the shard when placement does not want it (see view.removable).
	removable func(id string) bool
	// caughtUp: the node's replica is close to this leader (true for self).
	caughtUp func(id string) bool
	// hasReplica: the node has opened a replica of the shard, so the leader
	// can reach it (true for self).
	hasReplica func(id string) bool
	// settled: this node has led long enough to hand the lead to the
	// preferred leader.
	settled bool
}

// decide returns the next step towards the placement, in this order:
//
//  1. fix the Raft address of a member that moved (a restarted container);
//  2. remove a nonvoter placement no longer wants;
//  3. promote a nonvoter that has caught up — or wait while one catches up;
//  4. add a missing placed node as a nonvoter, once it has opened its replica;
//  5. with more voters than placed, remove one placement no longer wants
//     (gone nodes first), only if the voters left hold a majority of
//     caught-up replicas; if that voter is this leader, hand the lead to a
//     caught-up placed voter first (the next leader removes this node);
//  6. with exactly the placed voters, hand the lead to the preferred leader
//     once settled.
//
// It never adds and removes in one step, never removes before the
// replacement votes, and never leaves fewer voters than placed.
func decide(st shardState) action {
	voters, nonvoters := st.cfg.Voters(), st.cfg.Nonvoters()
	slices.Sort(voters)
	slices.Sort(nonvoters)
	placed := func(id string) bool { return slices.Contains(st.want, id) }

	servers := slices.Clone(st.cfg.Servers)
	slices.SortFunc(servers, func(a, b raft.Server) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	for _, srv := range servers {
		if addr, ok := st.addrs[string(srv.ID)]; ok && addr != string(srv.Address) && string(srv.ID) != st.self {
			return action{kind: actUpdateAddress, id: string(srv.ID), addr: addr, why: "gossip reports a new Raft address"}
		}
	}
	for _, id := range nonvoters {
		if !placed(id) {
			return action{kind: actRemove, id: id, why: "nonvoter no longer placed here"}
		}
	}
	for _, id := range nonvoters {
		if st.caughtUp(id) {
			addr, _ := st.cfg.Address(id)
			return action{kind: actPromote, id: id, addr: addr, why: "caught up"}
		}
	}
	if len(nonvoters) > 0 {
		return action{why: "waiting for a nonvoter to catch up"}
	}
	for _, id := range st.want {
		if st.cfg.Has(id) {
			continue
		}
		addr, ok := st.addrs[id]
		if ok && st.hasReplica(id) {
			return action{kind: actAddNonvoter, id: id, addr: addr, why: "placed here"}
		}
	}
	var extra, unsure []string
	for _, id := range voters {
		switch {
		case placed(id):
		case st.removable(id):
			extra = append(extra, id)
		default:
			unsure = append(unsure, id)
		}
	}
	if len(extra) > 0 && len(voters) > len(st.want) {
		// Gone nodes first, this leader last (removing another keeps the
		// lead where it is), then by id.
		rank := func(id string) int {
			switch {
			case !st.alive(id):
				return 0
			case id == st.self:
				return 2
			}
			return 1
		}
		slices.SortStableFunc(extra, func(a, b string) int { return rank(a) - rank(b) })
		x := extra[0]
		if x == st.self {
			if t := transferTarget(st, voters); t != "" {
				return action{kind: actTransfer, id: t, why: "this leader is no longer placed here"}
			}
			return action{why: "no caught-up placed voter to hand the lead to"}
		}
		remaining := 0
		caught := 0
		for _, id := range voters {
			if id == x {
				continue
			}
			remaining++
			if st.caughtUp(id) {
				caught++
			}
		}
		if caught >= remaining/2+1 {
			return action{kind: actRemove, id: x, why: "voter no longer placed here"}
		}
		return action{why: "removing a voter would leave too few caught-up voters"}
	}
	if len(unsure) > 0 {
		return action{why: "gossip has not told this node enough about a voter placement does not want"}
	}
	if st.settled && st.preferred != "" && st.preferred != st.self && len(extra) == 0 &&
		len(voters) == len(st.want) && slices.Contains(voters, st.preferred) && st.caughtUp(st.preferred) {
		return action{kind: actTransfer, id: st.preferred, why: "spreading leaders: the placement prefers this node"}
	}
	return action{}
}

// transferTarget is the voter to hand the lead to when this leader must
// go: the preferred leader if it can take over, else the first caught-up
// placed voter.
func transferTarget(st shardState, voters []string) string {
	if st.preferred != st.self && slices.Contains(voters, st.preferred) && st.caughtUp(st.preferred) {
		return st.preferred
	}
	for _, id := range st.want {
		if id != st.self && slices.Contains(voters, id) && st.caughtUp(id) {
			return id
		}
	}
	return ""
}
