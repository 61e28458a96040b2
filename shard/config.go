package shard

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/frontdeskhq/frontdesk/shard/sharedlog"
	"github.com/frontdeskhq/frontdesk/shard/transport"
)

// HostConfig configures a Host. Zero values take the defaults stated on each
// field.
type HostConfig struct {
	// NodeID is this node's Raft server id in every shard (required).
	NodeID string
	// DataDir holds the replicas: DataDir/shards/<n>/ has raft.db (with the
	// default store) and snapshots/ (required).
	DataDir string
	// Mux carries every shard's Raft traffic; its advertised address is this
	// node's Raft address (required). The Host does not close it.
	Mux *transport.Mux
	// Logger receives the Host's logs and, through hclogslog, raft's. nil
	// means slog.Default().
	Logger *slog.Logger
	// Raft timings; zero fields take LANTiming's.
	Raft RaftTiming
	// TickInterval is how often the leader of each shard proposes a pb.Tick
	// (default 1s; negative: never).
	TickInterval time.Duration
	// OpenStore opens a shard's log and stable store (default BoltStore).
	OpenStore StoreFactory
	// SharedLog keeps every shard's log and stable store in one file,
	// DataDir/raft-shared.db (package shard/sharedlog), whose commits and
	// fsyncs the shards writing at the same time share, instead of a
	// raft.db per shard. OpenStore must then be nil. A data dir keeps the
	// choice it was first written with: the Host refuses the other one.
	SharedLog bool
	// SharedLogOptions tune the shared store (zero values: its defaults).
	SharedLogOptions sharedlog.Options
	// SnapshotThreshold is how many log entries since the last snapshot make
	// raft take one, checked every SnapshotInterval (defaults: raft's, 8192
	// entries and 120s).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log, so a
	// follower slightly behind catches up without a snapshot (default:
	// raft's, 10240).
	TrailingLogs uint64
	// MaxAppendEntries is how many log entries one AppendEntries RPC
	// carries at most, and how many proposals the leader writes to its log
	// in one go (default DefaultMaxAppendEntries; raft allows at most
	// 1024). A follower that fell behind catches up in batches of this
	// many, one round trip and fsync each. Zero takes the default; values
	// outside 1..1024 are refused.
	MaxAppendEntries int
	// TransportTimeout bounds one Raft RPC's I/O (default 2s);
	// TransportPool is how many idle connections to keep per peer and shard
	// (default 3).
	TransportTimeout time.Duration
	TransportPool    int
}

// RaftTiming is the part of raft's configuration that decides how quickly
// failures are detected and leaders elected. See DESIGN.md for the choice.
type RaftTiming struct {
	// HeartbeatTimeout: a follower without contact from the leader for a
	// random time between this and twice this starts an election. The
	// leader heartbeats every tenth of it.
	HeartbeatTimeout time.Duration
	// ElectionTimeout: a candidate without a result for between this and
	// twice this starts a new election.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: a leader without contact from a quorum for this
	// long steps down. At most HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout: how long the leader waits, with nothing new to send,
	// before sending each follower an append anyway (which tells it the
	// commit index and finds a follower whose log fell behind). Idle
	// followers learn the commit index sooner, from a heartbeat
	// (shard/transport/commit.go).
	CommitTimeout time.Duration
	// CoalesceWindow: how long a heartbeat may wait to travel with other
	// shards' to the same node (see transport.Transport). Zero means HeartbeatTimeout/25; negative sends
	// each on its own connection, as raft alone does.
	CoalesceWindow time.Duration
}

// LANTiming is the default: a leader whose process dies is replaced at once
// (fastelect.go); a silent failure (paused, partitioned, powered off) is
// detected in 1–2 s and an election on a LAN takes a few milliseconds
// more, while a loaded 2-core machine (GC pauses, fsyncs) rarely misses a
// heartbeat for long enough to cause a spurious election. Raft heartbeats
// every tenth of the heartbeat timeout, and those wake-ups are most of an
// idle node's CPU: 1 s rather than 500 ms took idle 64-shard nodes from
// 5–6.5% of a core to 3.5–4% (shard/DESIGN.md, "Raft timings").
func LANTiming() RaftTiming {
	return RaftTiming{
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 800 * time.Millisecond,
		CommitTimeout:      500 * time.Millisecond,
	}
}

// FastTiming is for tests and local development on one machine: failures
// are detected in 100–200 ms.
func FastTiming() RaftTiming {
	return RaftTiming{
		HeartbeatTimeout:   100 * time.Millisecond,
		ElectionTimeout:    100 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
	}
}

func (t RaftTiming) withDefaults() RaftTiming {
	d := LANTiming()
	if t.HeartbeatTimeout <= 0 {
		t.HeartbeatTimeout = d.HeartbeatTimeout
	}
	if t.ElectionTimeout <= 0 {
		t.ElectionTimeout = d.ElectionTimeout
	}
	if t.LeaderLeaseTimeout <= 0 {
		t.LeaderLeaseTimeout = min(d.LeaderLeaseTimeout, t.HeartbeatTimeout)
	}
	if t.CommitTimeout <= 0 {
		t.CommitTimeout = d.CommitTimeout
	}
	if t.CoalesceWindow == 0 {
		t.CoalesceWindow = t.HeartbeatTimeout / 25
	}
	return t
}

// Defaults of HostConfig.
const (
	DefaultTickInterval     = time.Second
	DefaultTransportTimeout = 2 * time.Second
	DefaultTransportPool    = 3
	// logCacheSize is how many recent entries raft keeps in memory in front
	// of the store, for replication and reads of fresh entries.
	logCacheSize = 512
)

func (c HostConfig) withDefaults() (HostConfig, error) {
	if c.NodeID == "" {
		return c, errors.New("shard: HostConfig.NodeID is required")
	}
	if c.DataDir == "" {
		return c, errors.New("shard: HostConfig.DataDir is required")
	}
	if c.Mux == nil {
		return c, errors.New("shard: HostConfig.Mux is required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Raft = c.Raft.withDefaults()
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.SharedLog && c.OpenStore != nil {
		return c, errors.New("shard: HostConfig.SharedLog and OpenStore are exclusive")
	}
	if c.OpenStore == nil && !c.SharedLog {
		c.OpenStore = BoltStore
	}
	if c.TransportTimeout <= 0 {
		c.TransportTimeout = DefaultTransportTimeout
	}
	if c.TransportPool <= 0 {
		c.TransportPool = DefaultTransportPool
	}
	switch {
	case c.MaxAppendEntries == 0:
		c.MaxAppendEntries = DefaultMaxAppendEntries
	case c.MaxAppendEntries < 0 || c.MaxAppendEntries > MaxAppendEntriesLimit:
		return c, fmt.Errorf("shard: HostConfig.MaxAppendEntries must be within 1..%d, got %d", MaxAppendEntriesLimit, c.MaxAppendEntries)
	}
	return c, nil
}

// DefaultMaxAppendEntries is HostConfig.MaxAppendEntries's default, 8
// times raft's own (64): a follower that restarted under W1 caught up 64
// entries per round trip, about as fast as new ones came, and was still
// some 700 entries behind when the next leader needed it for a quorum
// (BENCHMARKS.md, "Failover: where the windows went").
const DefaultMaxAppendEntries = 512

// MaxAppendEntriesLimit is the most HostConfig.MaxAppendEntries may be:
// the most raft's ValidateConfig accepts.
const MaxAppendEntriesLimit = 1024

// DefaultRaftConfig is the raft configuration a Host with default settings
// gives each of node nodeID's replicas: LANTiming, DefaultMaxAppendEntries,
// raft's snapshot thresholds, no shutdown on removal; the caller sets
// Logger. It is for references that run plain hashicorp/raft beside the
// shard layer and must configure it alike (fdbench's ceiling).
func DefaultRaftConfig(nodeID string) *raft.Config {
	c := HostConfig{NodeID: nodeID, Raft: RaftTiming{}.withDefaults(), MaxAppendEntries: DefaultMaxAppendEntries}
	return c.raftConfig()
}

// raftConfig is raft's configuration for one replica.
func (c *HostConfig) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.Raft.HeartbeatTimeout
	rc.ElectionTimeout = c.Raft.ElectionTimeout
	rc.LeaderLeaseTimeout = c.Raft.LeaderLeaseTimeout
	rc.CommitTimeout = c.Raft.CommitTimeout
	if c.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = c.SnapshotThreshold
	}
	if c.SnapshotInterval > 0 {
		rc.SnapshotInterval = c.SnapshotInterval
	}
	if c.TrailingLogs > 0 {
		rc.TrailingLogs = c.TrailingLogs
	}
	rc.MaxAppendEntries = c.MaxAppendEntries // set by withDefaults
	// A replica removed from its shard keeps running, leaderless and
	// harmless, until its node closes it; raft shutting itself down would
	// leave a Group whose every call fails with ErrShutdown.
	rc.ShutdownOnRemove = false
	return rc
}

// Store is a shard's Raft log and stable storage.
type Store interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// StoreFactory opens the Store of a shard whose directory is dir
// (DataDir/shards/<n>, already created). It is the storage seam: the default
// is one raft-boltdb/v2 file per shard; a node-wide log shared by all shards
// can be plugged in here.
type StoreFactory func(dir string, shard uint32) (Store, error)

// BoltStore is the default StoreFactory: dir/raft.db, a raft-boltdb/v2
// store that fsyncs every append. Opening waits at most a second for the
// file lock, so a second process on the same data dir fails instead of
// hanging.
func BoltStore(dir string, _ uint32) (Store, error) {
	return raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
}

// SharedLogFile is the shared store's file in the data dir
// (HostConfig.SharedLog).
const SharedLogFile = "raft-shared.db"

// DataDirLogStore reports which kind of log store the data dir was written
// with: shared (DataDir/raft-shared.db exists) or one raft.db per shard
// (some DataDir/shards/<n>/raft.db exists). found is false for a new or
// empty data dir, which can take either. A Host refuses the kind a data dir
// was not written with, so a caller with no preference of its own (the
// node's --log-store auto) uses this to keep what is there.
func DataDirLogStore(dataDir string) (shared, found bool, err error) {
	if _, err := os.Stat(filepath.Join(dataDir, SharedLogFile)); err == nil {
		return true, true, nil
	} else if !os.IsNotExist(err) {
		return false, false, fmt.Errorf("shard: %w", err)
	}
	dbs, err := filepath.Glob(filepath.Join(dataDir, "shards", "*", "raft.db"))
	if err != nil {
		return false, false, fmt.Errorf("shard: %w", err)
	}
	return false, len(dbs) > 0, nil
}

// openShared opens the Host's shared store if the config asks for one, and
// checks that the data dir was not written with the other kind of store.
func openShared(c *HostConfig) (*sharedlog.Store, error) {
	path := filepath.Join(c.DataDir, SharedLogFile)
	if !c.SharedLog {
		if _, err := os.Stat(path); err == nil {
			return nil, fmt.Errorf("shard: %s exists: this data dir was written with the shared log store (--log-store shared)", path)
		}
		return nil, nil
	}
	// Refuse a per-shard data dir before creating the shared file in it,
	// so that asking for the wrong kind changes nothing.
	if shared, found, err := DataDirLogStore(c.DataDir); err != nil {
		return nil, err
	} else if found && !shared {
		return nil, fmt.Errorf("shard: %s has shards with their own raft.db: this data dir was written without the shared log store", c.DataDir)
	}
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	st, err := sharedlog.Open(path, c.SharedLogOptions)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	c.OpenStore = func(dir string, n uint32) (Store, error) {
		if _, err := os.Stat(filepath.Join(dir, "raft.db")); err == nil {
			return nil, fmt.Errorf("%s has a raft.db: this data dir was written without the shared log store", dir)
		}
		return st.Shard(n)
	}
	return st, nil
}
