package shard

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Configuration is a shard's membership as one replica knows it: the
// servers of the latest configuration in its log, voters and nonvoters,
// committed or not. (raft does not say at which index: its
// ConfigurationFuture.Index is always 0 since v1.7. A configuration read
// before an Info whose CommitIndex has reached LastIndex is committed.)
type Configuration struct {
	Servers []raft.Server
}

// Voters returns the ids of the voters.
func (c Configuration) Voters() []string { return c.ids(raft.Voter) }

// Nonvoters returns the ids of the nonvoters (replicas that receive the log
// but do not vote, as a new replica does while it catches up).
func (c Configuration) Nonvoters() []string { return c.ids(raft.Nonvoter) }

// Has reports whether id is in the configuration, voter or not.
func (c Configuration) Has(id string) bool {
	for _, s := range c.Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// Address returns the Raft address of server id.
func (c Configuration) Address(id string) (string, bool) {
	for _, s := range c.Servers {
		if string(s.ID) == id {
			return string(s.Address), true
		}
	}
	return "", false
}

func (c Configuration) ids(suffrage raft.ServerSuffrage) []string {
	var out []string
	for _, s := range c.Servers {
		if s.Suffrage == suffrage {
			out = append(out, string(s.ID))
		}
	}
	return out
}

// Configuration returns the replica's latest configuration. It waits for
// raft's main loop (usually microseconds) and fails with ErrShutdown once
// the replica is closed.
func (g *Group) Configuration() (Configuration, error) {
	if g.isClosing() {
		return Configuration{}, fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
	}
	f := g.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return Configuration{}, g.readErr(err)
	}
	return Configuration{Servers: f.Configuration().Servers}, nil
}

// AddNonvoter adds a replica that receives the log without voting (or
// updates its address), returning once the change has committed. It is how
// a new replica joins safely: it catches up by log or snapshot while the
// quorum stays among the voters, then AddVoter promotes it. A voter cannot
// be turned into a nonvoter this way (its address is updated only). Run on
// the leader; errors are those of AddVoter.
func (g *Group) AddNonvoter(ctx context.Context, id, addr string) error {
	return g.changeConfiguration(ctx, func(timeout time.Duration) raft.Future {
		return g.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)
	})
}
