package nodetest

import (
	"errors"
	"fmt"
	"slices"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/node"
)

// Layout is the cluster as its nodes report it: for every shard, the
// leader and its committed voters, and which nodes hold a replica.
type Layout struct {
	Shards  uint32
	Leader  []string   // per shard; "" if no node claims it
	Voters  [][]string // per shard, sorted, from the leader's replica
	Holders [][]string // per shard, sorted: nodes with a replica open
	// Pending lists shards whose leader reports nonvoters (replicas still
	// catching up).
	Pending []uint32
}

// LayoutOf merges the statuses of the running nodes (by node id). A node
// that does not lead a shard says nothing about its voters; when two nodes
// claim a shard (an old leader not yet aware of the new term) the higher
// term wins.
func LayoutOf(statuses map[string]*pb.GetStatusResponse) (*Layout, error) {
	l := &Layout{}
	for _, st := range statuses {
		l.Shards = max(l.Shards, uint32(len(st.GetShardInfos())))
	}
	if l.Shards == 0 {
		return nil, errors.New("no node reports any shard")
	}
	l.Leader = make([]string, l.Shards)
	l.Voters = make([][]string, l.Shards)
	l.Holders = make([][]string, l.Shards)
	terms := make([]uint64, l.Shards)
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range statuses {
			if !yield(id) {
				return
			}
		}
	})
	pending := map[uint32]bool{}
	for _, id := range ids {
		for _, si := range statuses[id].GetShardInfos() {
			s := si.GetShard()
			if s >= l.Shards || si.GetLocalState() == "" {
				continue
			}
			l.Holders[s] = append(l.Holders[s], id)
			if si.GetLocalState() != "Leader" || si.GetTerm() < terms[s] {
				continue
			}
			terms[s] = si.GetTerm()
			l.Leader[s] = id
			l.Voters[s] = slices.Sorted(slices.Values(si.GetVoterIds()))
			pending[s] = len(si.GetNonvoterIds()) > 0
		}
	}
	for s := range l.Shards {
		if pending[s] {
			l.Pending = append(l.Pending, s)
		}
	}
	return l, nil
}

// LeaderCounts returns how many shards each node leads.
func (l *Layout) LeaderCounts() map[string]int {
	out := map[string]int{}
	for _, id := range l.Leader {
		if id != "" {
			out[id]++
		}
	}
	return out
}

// Placed returns nil once the layout matches the placement of its shards
// over nodes with replication repl: every shard led, its committed voters
// exactly the placed ones, no replica held by a node that is not a voter
// of its shard, and every node leading within one of its even share
// (shards/len(nodes)). Otherwise the error says what differs first.
func (l *Layout) Placed(nodes []string, repl int) error {
	p := node.Place(l.Shards, nodes, repl)
	if len(l.Pending) > 0 {
		return fmt.Errorf("shards %v are changing their configuration", l.Pending)
	}
	for s := range l.Shards {
		want := slices.Sorted(slices.Values(p[s]))
		switch {
		case l.Leader[s] == "":
			return fmt.Errorf("shard %d has no leader", s)
		case !slices.Equal(l.Voters[s], want):
			return fmt.Errorf("shard %d: voters %v, placement wants %v", s, l.Voters[s], want)
		case !slices.Equal(l.Holders[s], want):
			return fmt.Errorf("shard %d: replicas held by %v, voters %v", s, l.Holders[s], want)
		}
	}
	even := float64(l.Shards) / float64(len(nodes))
	counts := l.LeaderCounts()
	for _, id := range nodes {
		if c := float64(counts[id]); c < even-1 || c > even+1 {
			return fmt.Errorf("%s leads %d shards, more than one away from an even %.1f (%v)", id, counts[id], even, counts)
		}
	}
	return nil
}
