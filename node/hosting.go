package node

import (
	"context"
	"slices"
	"sync"
	"time"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
)

// placementLoop runs placement rounds until ctx ends: once the node belongs
// to a formed cluster, every ReconcileInterval and whenever gossip changes.
// A round opens the replicas placement gives this node, drops those no
// shard counts it in any more, and lets this node's shard leaders move
// their shards' voters and leadership towards the placement (reconcile.go).
func (n *Node) placementLoop(ctx context.Context) {
	select {
	case <-n.formed:
	case <-ctx.Done():
		return
	}
	r := newReconciler(n)
	t := time.NewTicker(n.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		_, changed := n.members.snapshot()
		n.placementRound(ctx, r)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
			// Let a burst of gossip updates settle into one round.
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
	}
}

// placementRound is one pass: hosting first, then every shard this node
// leads, concurrently (each shard makes at most one change per round).
func (n *Node) placementRound(ctx context.Context, r *reconciler) {
	v := n.view(time.Now())
	if v.shards == 0 {
		return
	}
	if !slices.Equal(v.placeable, r.lastPlaceable) {
		n.log.Info("placement: placeable nodes changed", "nodes", v.placeable, "was", r.lastPlaceable)
		r.lastPlaceable = v.placeable
	}
	sc := newStatusCache(n.peers)
	n.hostReplicas(ctx, v, sc)
	var wg sync.WaitGroup
	for _, g := range n.host.Groups() {
		if !g.IsLeader() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.reconcile(ctx, v, sc, g)
		}()
	}
	wg.Wait()
}

// hostReplicas opens a replica of every shard placed on this node and drops the
// replicas of shards placed elsewhere once their leader confirms, with a
// committed configuration, that this node is no longer a member.
func (n *Node) hostReplicas(ctx context.Context, v *view, sc *statusCache) {
	for s := range v.shards {
		placed := v.placement.Has(s, v.self)
		g, open := n.host.Group(s)
		switch {
		case placed && !open:
			if _, err := n.host.Open(s); err != nil {
				n.log.Warn("placement: open replica", "shard", s, "err", err)
				continue
			}
			n.log.Info("placement: opened a replica, waiting to be added by the leader", "shard", s)
		case !placed && open:
			if n.mayDrop(ctx, v, sc, g) {
				if err := n.host.Drop(s); err != nil {
					n.log.Warn("placement: drop replica", "shard", s, "err", err)
					continue
				}
				n.log.Info("placement: dropped a replica this node no longer holds", "shard", s)
			}
		}
	}
}

// mayDrop reports whether this node may delete its replica of g's shard:
// the shard's leader (another node) says so with a committed configuration
// that lists this node neither as voter nor as nonvoter, and this replica
// has not since heard of a later configuration that includes it.
func (n *Node) mayDrop(ctx context.Context, v *view, sc *statusCache, g *shard.Group) bool {
	s := g.Shard()
	info := g.Info()
	if info.State == "Leader" {
		return false // the leader hands its lead over first (reconcile)
	}
	si := n.askLeader(ctx, v, sc, s)
	if si == nil {
		return false
	}
	if slices.Contains(si.GetVoterIds(), v.self) || slices.Contains(si.GetNonvoterIds(), v.self) {
		return false
	}
	if !si.GetConfigurationCommitted() {
		return false
	}
	// A configuration that adds this node back would come after the
	// leader's log as it was read (its commit index had reached its last
	// index); this replica has nothing after it, so it has not been re-added.
	if g.Info().LastIndex > si.GetCommitIndex() {
		return false
	}
	return true
}

// askLeader finds shard s's leader among the other nodes and returns its
// view of the shard, or nil. It starts from the leader this node knows (its
// replica may name one from before its removal; gossip names the current
// one) and the placed voters, following the hints of the nodes asked.
func (n *Node) askLeader(ctx context.Context, v *view, sc *statusCache, s uint32) *pb.ShardInfo {
	known, _ := n.Leader(s)
	asked := map[string]bool{v.self: true}
	for _, id := range append([]string{known}, v.placement[s]...) {
		for hop := 0; id != "" && !asked[id] && hop < 3; hop++ {
			asked[id] = true
			si := sc.shard(ctx, id, s)
			if si == nil {
				break
			}
			if si.GetLocalState() == "Leader" {
				return si
			}
			id = si.GetLeaderId()
		}
	}
	return nil
}
