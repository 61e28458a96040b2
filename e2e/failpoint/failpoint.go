package failpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// Failpoint is one kind of fault. Inject breaks the cluster around a shard
// and returns once the fault has had the effect it is for (another node
// leads the shard, say); Heal repairs what Inject broke. Neither waits for
// the cluster to be healthy again: Run does.
type Failpoint interface {
	Name() string
	Inject(ctx context.Context, e *Env, shard uint32) (*Injection, error)
	Heal(ctx context.Context, e *Env, in *Injection) error
}

// Injection is one fault as it happened.
type Injection struct {
	Kind  string   `json:"kind"`
	Shard uint32   `json:"shard"`
	Nodes []string `json:"nodes"` // the nodes acted on
	// At is when the fault was in place: the process killed or frozen, the
	// network cut (the last node killed, for restart-all).
	At time.Time `json:"at"`
	// Elected is how long until another node led the shard, for the
	// faults that take its leader away.
	Elected time.Duration `json:"elected_ns,omitempty"`
	Healed  time.Time     `json:"healed"`  // when Heal returned
	Healthy time.Time     `json:"healthy"` // when the cluster was healthy again
	Note    string        `json:"note,omitempty"`
	// Snapshots: wipe-node, how many of the node's shards were caught up
	// with a snapshot (the others replayed their leaders' logs).
	Snapshots int `json:"snapshots,omitempty"`

	nodes   []int
	logMark int // wipe-node: the length of the node's log before its restart
}

// The timeouts of a fault's steps.
const (
	electionTimeout = 20 * time.Second
	healthyTimeout  = 90 * time.Second
)

// Run injects fp around shard and heals it, checking that the cluster is
// healthy before (waiting for it) and after.
func Run(ctx context.Context, e *Env, fp Failpoint, shard uint32) (*Injection, error) {
	if err := e.AwaitHealthy(ctx, healthyTimeout); err != nil {
		return nil, fmt.Errorf("%s: before: %w", fp.Name(), err)
	}
	in, err := fp.Inject(ctx, e, shard)
	if err != nil {
		if in != nil {
			err = errors.Join(err, fp.Heal(ctx, e, in))
		}
		return in, fmt.Errorf("%s: inject: %w", fp.Name(), err)
	}
	if err := fp.Heal(ctx, e, in); err != nil {
		return in, fmt.Errorf("%s: heal: %w", fp.Name(), err)
	}
	in.Healed = time.Now()
	if err := e.AwaitHealthy(ctx, healthyTimeout); err != nil {
		return in, fmt.Errorf("%s: after: %w", fp.Name(), err)
	}
	in.Healthy = time.Now()
	e.logf("%s: shard %d, nodes %v%s; healthy %v after the fault", in.Kind, shard, in.Nodes, note(in),
		in.Healthy.Sub(in.At).Round(time.Millisecond))
	return in, nil
}

func note(in *Injection) string {
	s := ""
	if in.Elected > 0 {
		s += fmt.Sprintf("; new leader after %v", in.Elected.Round(time.Millisecond))
	}
	if in.Note != "" {
		s += "; " + in.Note
	}
	return s
}

func (e *Env) injection(kind string, shard uint32, nodes ...int) *Injection {
	in := &Injection{Kind: kind, Shard: shard, At: time.Now(), nodes: nodes}
	for _, n := range nodes {
		in.Nodes = append(in.Nodes, e.D.NodeID(n))
	}
	return in
}

// leader finds the shard's leader to act on, waiting up to
// electionTimeout for one: the cluster was healthy a moment ago, but a
// leadership hand-over may have begun since (the placement spreads leaders
// again once a node is back from the previous fault), and during it no node
// leads the shard.
func (e *Env) leader(ctx context.Context, shard uint32) (int, error) {
	deadline := time.Now().Add(electionTimeout)
	for {
		if l := e.Leader(ctx, shard); l >= 0 {
			return l, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return -1, fmt.Errorf("%w (shard %d, %v)", errNoLeader, shard, electionTimeout)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// KillLeader SIGKILLs the shard's leader, waits until another node leads,
// and starts it again with its data.
type KillLeader struct{}

func (KillLeader) Name() string { return "kill-leader" }

func (KillLeader) Inject(ctx context.Context, e *Env, shard uint32) (*Injection, error) {
	l, err := e.leader(ctx, shard)
	if err != nil {
		return nil, err
	}
	in := e.injection("kill-leader", shard, l)
	if err := e.D.Kill(l); err != nil {
		return nil, err
	}
	in.At = time.Now()
	_, in.Elected, err = e.awaitLeader(ctx, shard, l, electionTimeout)
	return in, err
}

func (KillLeader) Heal(ctx context.Context, e *Env, in *Injection) error {
	return e.D.Start(in.nodes[0])
}

// KillFollower SIGKILLs a node that does not lead the shard, leaves it down
// for a moment, and starts it again.
type KillFollower struct{ Down time.Duration }

func (KillFollower) Name() string { return "kill-follower" }

func (f KillFollower) Inject(ctx context.Context, e *Env, shard uint32) (*Injection, error) {
	l, err := e.leader(ctx, shard)
	if err != nil {
		return nil, err
	}
	victim := (l + 1 + int(shard)%(e.D.Size()-1)) % e.D.Size()
	in := e.injection("kill-follower", shard, victim)
	if err := e.D.Kill(victim); err != nil {
		return nil, err
	}
	in.At = time.Now()
	sleep(ctx, f.Down)
	return in, nil
}

func (KillFollower) Heal(ctx context.Context, e *Env, in *Injection) error {
	return e.D.Start(in.nodes[0])
}

// PauseLeader freezes the shard's leader (SIGSTOP) until another node
// leads, keeps it frozen a little longer, and lets it run again. The old
// leader wakes up believing it leads; it must not acknowledge anything
// (the history's checks tell).
type PauseLeader struct{ Extra time.Duration }

func (PauseLeader) Name() string { return "pause-leader" }

func (p PauseLeader) Inject(ctx context.Context, e *Env, shard uint32) (*Injection, error) {
	l, err := e.leader(ctx, shard)
	if err != nil {
		return nil, err
	}
	in := e.injection("pause-leader", shard, l)
	if err := e.D.Pause(l); err != nil {
		return nil, err
	}
	in.At = time.Now()
	_, in.Elected, err = e.awaitLeader(ctx, shard, l, electionTimeout)
	sleep(ctx, p.Extra)
	return in, err
}

func (PauseLeader) Heal(ctx context.Context, e *Env, in *Injection) error {
	return e.D.Resume(in.nodes[0])
}

// PartitionLeader cuts the shard's leader off from the other nodes (clients
// still reach it) until another node leads, a little longer, and heals the
// network.
type PartitionLeader struct{ Extra time.Duration }

func (PartitionLeader) Name() string { return "partition-leader" }

func (p PartitionLeader) Inject(ctx context.Context, e *Env, shard uint32) (*Injection, error) {
	l, err := e.leader(ctx, shard)
	if err != nil {
		return nil, err
	}
	in := e.injection("partition-leader", shard, l)
	if err := e.D.Partition(l); err != nil {
		return in, err
	}
	in.At = time.Now()
	_, in.Elected, err = e.awaitLeader(ctx, shard, l, electionTimeout)
	sleep(ctx, p.Extra)
	return in, err
}

func (PartitionLeader) Heal(ctx context.Context, e *Env, in *Injection) error { return e.D.Heal() }

// RestartAll SIGKILLs every node at once and starts them all again.
type RestartAll struct{}

func (RestartAll) Name() string { return "restart-all" }

func (RestartAll) Inject(ctx context.Context, e *Env, shard uint32) (*Injection, error) {
	var all []int
	for i := 0; i < e.D.Size(); i++ {
		all = append(all, i)
	}
	in := e.injection("restart-all", shard, all...)
	for _, i := range all {
		if err := e.D.Kill(i); err != nil {
			return in, err
		}
	}
	in.At = time.Now()
	return in, nil
}

func (RestartAll) Heal(ctx context.Context, e *Env, in *Injection) error {
	var errs []error
	for _, i := range in.nodes {
		errs = append(errs, e.D.Start(i))
	}
	return errors.Join(errs...)
}

// WipeNode SIGKILLs a node that does not lead the shard, deletes its data
// and starts it empty: it rejoins from gossip as the member it was, and
// the shards' leaders catch it up — with a snapshot where their logs were
// compacted (run the nodes with a small --snapshot-threshold and
// --trailing-logs to make that the rule). Heal waits until the node has
// every shard again and notes how many snapshots it installed.
type WipeNode struct{}

func (WipeNode) Name() string { return "wipe-node" }

func (WipeNode) Inject(ctx context.Context, e *Env, shard uint32) (*Injection, error) {
	l, err := e.leader(ctx, shard)
	if err != nil {
		return nil, err
	}
	victim := (l + 1 + int(shard)%(e.D.Size()-1)) % e.D.Size()
	in := e.injection("wipe-node", shard, victim)
	if err := e.D.Kill(victim); err != nil {
		return nil, err
	}
	in.At = time.Now()
	if err := e.D.Wipe(victim); err != nil {
		return in, err
	}
	log, _ := e.D.Log(victim)
	in.logMark = len(log)
	return in, e.D.Start(victim)
}

func (WipeNode) Heal(ctx context.Context, e *Env, in *Injection) error {
	if err := e.AwaitHealthy(ctx, healthyTimeout); err != nil {
		return err
	}
	log, err := e.D.Log(in.nodes[0])
	if err != nil {
		return err
	}
	if in.logMark <= len(log) {
		log = log[in.logMark:]
	}
	in.Snapshots = bytes.Count(log, []byte("Installed remote snapshot"))
	in.Note = fmt.Sprintf("%d shards rejoined from a snapshot", in.Snapshots)
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
