package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// statusView is `fdctl status --json`.
type statusView struct {
	Nodes  []nodeRow  `json:"nodes"`
	Shards []shardRow `json:"shards"`
}

type nodeRow struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	StateAgeMs int64  `json:"stateAgeMs"`
	APIAddr    string `json:"apiAddr"`
	RaftAddr   string `json:"raftAddr"`
	Draining   bool   `json:"draining"`
	// Leads and Replicas count the shards the node leads and holds, as
	// it reports them; Reachable is false when it did not answer.
	Leads     int  `json:"leads"`
	Replicas  int  `json:"replicas"`
	Reachable bool `json:"reachable"`
}

type shardRow struct {
	Shard       uint32   `json:"shard"`
	Leader      string   `json:"leader"`
	Term        uint64   `json:"term"`
	CommitIndex uint64   `json:"commitIndex"`
	Voters      []string `json:"voters"`
	Nonvoters   []string `json:"nonvoters,omitempty"`
	Placement   []string `json:"placement"`
	// Lag is, per replica, how many entries it has yet to apply of those
	// the leader has committed (absent: the replica did not answer).
	Lag map[string]uint64 `json:"lag"`
	// Settled: the voters are the placed ones and nobody is catching up.
	Settled bool `json:"settled"`
}

// status prints the nodes as gossip sees them and every shard as its
// leader sees it, with each replica's lag behind the leader (every live
// node is asked for its own replicas' progress).
func (c *cmd) status(args []string) error {
	if _, err := c.flags("status", args, 0, 0, nil); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	st, err := cl.Status(c.ctx)
	if err != nil {
		return err
	}
	// Ask every live node for its replicas.
	own := make([]*pb.GetStatusResponse, len(st.Nodes))
	var wg sync.WaitGroup
	for i, n := range st.Nodes {
		if n.State != "alive" && n.State != "suspect" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, err := cl.NodeStatus(c.ctx, n.ApiAddr); err == nil {
				own[i] = s
			}
		}()
	}
	wg.Wait()
	v := buildStatus(st, own)
	if c.json {
		return writeJSON(c.stdout, v)
	}
	t := newTable(c.stdout, "NODE", "STATE", "FOR", "API", "DRAINING", "LEADS", "REPLICAS")
	for _, n := range v.Nodes {
		leads, reps := fmt.Sprint(n.Leads), fmt.Sprint(n.Replicas)
		if !n.Reachable {
			leads, reps = "?", "?"
		}
		draining := ""
		if n.Draining {
			draining = "yes"
		}
		t.row(n.ID, n.State, age(time.Duration(n.StateAgeMs)*time.Millisecond), n.APIAddr, draining, leads, reps)
	}
	t.flush()
	fmt.Fprintln(c.stdout)
	t = newTable(c.stdout, "SHARD", "LEADER", "TERM", "COMMIT", "VOTERS (LAG)", "NONVOTERS (LAG)", "PLACEMENT")
	for _, s := range v.Shards {
		placement := "settled"
		if !s.Settled {
			placement = "moving to " + strings.Join(s.Placement, " ")
		}
		t.row(fmt.Sprint(s.Shard), s.Leader, fmt.Sprint(s.Term), fmt.Sprint(s.CommitIndex),
			withLag(s.Voters, s.Leader, s.Lag), withLag(s.Nonvoters, s.Leader, s.Lag), placement)
	}
	t.flush()
	return nil
}

// withLag renders replicas as "node1* node2(0) node3(?)": * marks the
// leader, the number is the lag, ? a replica that did not answer.
func withLag(ids []string, leader string, lag map[string]uint64) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		switch l, ok := lag[id]; {
		case id == leader:
			out[i] = id + "*"
		case ok:
			out[i] = fmt.Sprintf("%s(%d)", id, l)
		default:
			out[i] = id + "(?)"
		}
	}
	return strings.Join(out, " ")
}

// buildStatus merges the cluster status (from one node) with each node's
// own status (own[i] for st.Nodes[i], nil if it did not answer).
func buildStatus(st *pb.GetStatusResponse, own []*pb.GetStatusResponse) statusView {
	var v statusView
	byShard := map[uint32]map[string]*pb.ShardInfo{} // shard → node → its replica
	for i, n := range st.Nodes {
		row := nodeRow{ID: n.Id, State: n.State, StateAgeMs: n.StateAgeMs, APIAddr: n.ApiAddr, RaftAddr: n.RaftAddr, Draining: n.Draining}
		if own[i] != nil {
			row.Reachable = true
			for _, si := range own[i].ShardInfos {
				if si.LocalState == "" {
					continue
				}
				row.Replicas++
				if si.LocalState == "Leader" {
					row.Leads++
				}
				if byShard[si.Shard] == nil {
					byShard[si.Shard] = map[string]*pb.ShardInfo{}
				}
				byShard[si.Shard][n.Id] = si
			}
		}
		v.Nodes = append(v.Nodes, row)
	}
	for _, si := range st.ShardInfos {
		row := shardRow{Shard: si.Shard, Leader: si.LeaderId, Placement: si.PlacementIds, Lag: map[string]uint64{}}
		// The leader's replica knows the voters; without an answer from
		// it, fall back to what the asked node knows.
		lead := si
		if l := byShard[si.Shard][si.LeaderId]; l != nil && l.LocalState == "Leader" {
			lead = l
		}
		row.Term, row.CommitIndex, row.Voters, row.Nonvoters = lead.Term, lead.CommitIndex, lead.VoterIds, lead.NonvoterIds
		for id, rep := range byShard[si.Shard] {
			if rep.AppliedIndex < row.CommitIndex {
				row.Lag[id] = row.CommitIndex - rep.AppliedIndex
			} else {
				row.Lag[id] = 0
			}
		}
		row.Settled = len(row.Nonvoters) == 0 &&
			slices.Equal(slices.Sorted(slices.Values(row.Voters)), slices.Sorted(slices.Values(row.Placement)))
		v.Shards = append(v.Shards, row)
	}
	return v
}
