package node

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/frontdeskhq/frontdesk/dispatch"
	"github.com/frontdeskhq/frontdesk/internal/gctune"
	"github.com/frontdeskhq/frontdesk/shard"
)

// Config is one frontdeskd process's configuration. Every field has a flag
// and an environment variable FRONTDESK_<FLAG NAME> (dashes as underscores);
// flags win over the environment.
type Config struct {
	ID              string        // --id: unique, stable node id
	DataDir         string        // --data-dir: where replicas live
	APIAddr         string        // --api-addr: Connect API, metrics, health (default :7420)
	RaftAddr        string        // --raft-addr: every shard's Raft traffic (default :7421)
	GossipAddr      string        // --gossip-addr: memberlist (default :7422)
	Advertise       string        // --advertise: host other nodes reach this one at
	Join            []string      // --join: gossip addresses of any members
	BootstrapExpect int           // --bootstrap-expect: nodes that form a new cluster
	Shards          uint32        // --shards: shard count of a new cluster (default 16)
	Replication     int           // --replication: voters per shard of a new cluster (default 3)
	DeadAfter       time.Duration // --dead-after: a node gone this long loses its replicas (default 30s)
	Dev             bool          // --dev: one node on loopback with a temporary data dir
	TickInterval    time.Duration // --tick: how often each shard leader advances time
	LogLevel        string        // --log-level: debug, info, warn, error
	LogFormat       string        // --log-format: text or json

	// Raft snapshots (0: raft's defaults). Small values make a replica that
	// fell behind, or lost its data, catch up from a snapshot.
	SnapshotThreshold uint64        // --snapshot-threshold: log entries between snapshots
	SnapshotInterval  time.Duration // --snapshot-interval: how often the threshold is checked
	TrailingLogs      uint64        // --trailing-logs: entries a snapshot leaves in the log
	// MaxAppendEntries: --raft-max-append-entries (0: shard.DefaultMaxAppendEntries).
	MaxAppendEntries int
	// LogStore is where the shards' Raft logs live: "shared" (one file per
	// node with cross-shard group commit, shard.HostConfig.SharedLog),
	// "per-shard" (a raft.db per shard), or "auto" (the default): what the
	// data dir was written with, shared for a new one. A data dir keeps the
	// kind it was first written with; asking for the other fails at start.
	LogStore string // --log-store (--shared-log is "shared")
	// Raft timings (0: shard.LANTiming). The election timeout equals the
	// heartbeat timeout and the leader lease is four fifths of it.
	RaftHeartbeatTimeout time.Duration // --raft-heartbeat-timeout
	RaftCommitTimeout    time.Duration // --raft-commit-timeout
	RaftCoalesceWindow   time.Duration // --raft-coalesce-window
	// RaftNoQuiet turns off quiet shards (shard/transport/quiet.go): a
	// leader's heartbeats to a follower node that promised to follow stay
	// home, and the follower's node keeps its replica's timer fed.
	RaftNoQuiet bool // --raft-quiet=false

	// Security (SECURITY.md).
	AuthSecretFile   string  // --auth-secret-file: HMAC secret for API tokens (≥ 32 bytes)
	Insecure         bool    // --insecure: allow listening beyond loopback without auth
	TLSCert, TLSKey  string  // --tls-cert, --tls-key: serve the API over TLS
	PeerTLSCert      string  // --peer-tls-cert: this node's certificate for Raft mTLS
	PeerTLSKey       string  // --peer-tls-key
	PeerTLSCA        string  // --peer-tls-ca: the CA that signs every node's peer certificate
	GossipKey        string  // --gossip-key: base64 AES key (16, 24 or 32 bytes) for gossip
	ConsultRate      float64 // --consult-rate: per-merchant consults/s admitted on this node (0: unlimited)
	ConsultBurst     int     // --consult-burst
	StreamsPerCaller int     // --streams-per-caller: open event streams per caller (0: unlimited)

	// GCHeadroom (--gc-headroom, default DefaultGCHeadroom; 0: off) is how
	// far the Go heap may grow beyond what the last collection found live
	// before the next one starts, never less than the runtime's doubling
	// (internal/gctune). frontdeskd applies it to its process; GOGC in the
	// environment overrides it. Node.Start does not: the collector's target
	// is the process's, not a node's.
	GCHeadroom uint64

	// Testing knobs (no flags).
	FastRaft bool // tight Raft and gossip timings for tests on loopback
	// JoinTimeout bounds how long Start keeps trying --join (default 30s).
	JoinTimeout time.Duration
	// ReconcileInterval is how often placement is checked when nothing
	// else wakes it (default 500ms).
	ReconcileInterval time.Duration
	// LeaderSettle is how long a shard's leader leads before it hands the
	// lead to the placement's preferred leader (default 5s), so that
	// leadership does not chase gossip that is still converging and a
	// manual transfer holds for a while.
	LeaderSettle time.Duration
}

// ParseFlags reads the configuration from args and the environment.
func ParseFlags(name string, args []string, getenv func(string) string) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var join string
	shards := uint(16)
	fs.StringVar(&c.ID, "id", "", "unique, stable node id (default: the host name)")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory for this node's replicas (required unless --dev)")
	fs.StringVar(&c.APIAddr, "api-addr", ":7420", "listen address of the Connect API, /metrics and health")
	fs.StringVar(&c.RaftAddr, "raft-addr", ":7421", "listen address for the Raft traffic of every shard")
	fs.StringVar(&c.GossipAddr, "gossip-addr", ":7422", "listen address for gossip (memberlist, TCP and UDP)")
	fs.StringVar(&c.Advertise, "advertise", "", "host or IP other nodes reach this node at (default: the listen host, or this host's first non-loopback IP)")
	fs.StringVar(&join, "join", "", "comma-separated gossip addresses of existing members")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", 0, "form a new cluster once this many nodes have met")
	fs.UintVar(&shards, "shards", shards, "shard count of a new cluster (fixed at bootstrap)")
	fs.IntVar(&c.Replication, "replication", 3, "voters per shard of a new cluster (fixed at bootstrap; fewer while fewer nodes are live)")
	fs.DurationVar(&c.DeadAfter, "dead-after", 30*time.Second, "a node dead or gone from gossip this long loses its replicas to live nodes")
	fs.BoolVar(&c.Dev, "dev", false, "run one node on 127.0.0.1 with a temporary data dir, no other service needed")
	fs.DurationVar(&c.TickInterval, "tick", time.Second, "how often each shard leader advances the state machine's time")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.AuthSecretFile, "auth-secret-file", "", "file holding the cluster's token secret (at least 32 bytes); API calls then need a bearer token")
	fs.BoolVar(&c.Insecure, "insecure", false, "allow listening beyond loopback without --auth-secret-file (not for production)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate for serving the API over TLS")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM key of --tls-cert")
	fs.StringVar(&c.PeerTLSCert, "peer-tls-cert", "", "PEM certificate of this node for mutual TLS on the Raft port")
	fs.StringVar(&c.PeerTLSKey, "peer-tls-key", "", "PEM key of --peer-tls-cert")
	fs.StringVar(&c.PeerTLSCA, "peer-tls-ca", "", "PEM CA that signs every node's peer certificate")
	fs.StringVar(&c.GossipKey, "gossip-key", "", "base64 AES key (16, 24 or 32 bytes) encrypting gossip; every node needs the same")
	lim := dispatch.DefaultLimits()
	fs.Float64Var(&c.ConsultRate, "consult-rate", lim.ConsultRate, "consults per second admitted per merchant on this node (0: unlimited)")
	fs.IntVar(&c.ConsultBurst, "consult-burst", lim.ConsultBurst, "consults a merchant may send at once above --consult-rate")
	fs.IntVar(&c.StreamsPerCaller, "streams-per-caller", lim.StreamsPerCaller, "event streams one caller may hold open (0: unlimited)")
	fs.Uint64Var(&c.SnapshotThreshold, "snapshot-threshold", 0, "log entries since the last snapshot that make a shard take one (0: raft's default, 8192)")
	fs.DurationVar(&c.SnapshotInterval, "snapshot-interval", 0, "how often each shard checks --snapshot-threshold (0: raft's default, 120s)")
	fs.IntVar(&c.MaxAppendEntries, "raft-max-append-entries", 0, "most log entries per AppendEntries RPC, and per leader log write; a lagging follower catches up in batches of this many (0: 512; at most 1024)")
	fs.Uint64Var(&c.TrailingLogs, "trailing-logs", 0, "log entries a snapshot leaves behind for followers to catch up from (0: raft's default, 10240)")
	fs.StringVar(&c.LogStore, "log-store", LogStoreAuto, "where the shards' Raft logs live: shared (one file, DATA_DIR/raft-shared.db, whose commits and fsyncs concurrent shards share), per-shard (a raft.db per shard), or auto (what the data dir was written with; shared for a new one). A data dir keeps the kind it was first written with")
	fs.BoolFunc("shared-log", "same as --log-store shared (=false: per-shard); kept for older scripts", func(v string) error {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		c.LogStore = LogStorePerShard
		if on {
			c.LogStore = LogStoreShared
		}
		return nil
	})
	fs.DurationVar(&c.RaftHeartbeatTimeout, "raft-heartbeat-timeout", 0, "a follower that hears nothing from its leader for between this and twice this starts an election; leaders heartbeat every tenth of it (0: 1s). A leader whose process dies is replaced at once regardless (shard/DESIGN.md)")
	fs.DurationVar(&c.RaftCommitTimeout, "raft-commit-timeout", 0, "how often an idle leader sends each follower an append anyway, which finds a follower whose log fell behind (0: 500ms; shorter costs idle CPU: 50ms doubles an idle node's; idle followers learn the commit index from the next heartbeat either way)")
	fs.Func("raft-quiet", "leaders answer their heartbeats to a node whose replicas promised to follow them themselves, and one beat per node pair every fifth of the heartbeat timeout carries what the heartbeats would (shard/transport/quiet.go); false sends every heartbeat (default true)", func(v string) error {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		c.RaftNoQuiet = !on
		return nil
	})
	c.GCHeadroom = DefaultGCHeadroom
	fs.Var((*sizeFlag)(&c.GCHeadroom), "gc-headroom", "how much the Go heap may grow beyond what the last garbage collection found live before the next one starts, never less than doubling (0: the runtime's doubling, GOGC=100). Fewer collections under load, each of which stalls the node's Raft pipeline for tens of milliseconds; costs up to this much more memory. GOGC in the environment overrides it; GOMEMLIMIT still caps the heap")
	fs.DurationVar(&c.RaftCoalesceWindow, "raft-coalesce-window", 0, "how long a shard's heartbeat may wait to travel with other shards' to the same node, in one write (0: a 25th of the heartbeat timeout; negative: each on its own)")
	// Environment first, so that flags given on the command line win.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		key := "FRONTDESK_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(key); v != "" {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", key, v, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if join != "" {
		for _, j := range strings.Split(join, ",") {
			if j = strings.TrimSpace(j); j != "" {
				c.Join = append(c.Join, j)
			}
		}
	}
	if shards == 0 || shards > 4096 {
		return nil, fmt.Errorf("--shards must be within 1..4096, got %d", shards)
	}
	c.Shards = uint32(shards)
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if c.Dev {
		c.applyDev(explicit)
	}
	return c, c.Validate()
}

// applyDev turns on the --dev defaults for what was not set explicitly.
func (c *Config) applyDev(explicit map[string]bool) {
	if !explicit["id"] && c.ID == "" {
		c.ID = "dev"
	}
	if !explicit["api-addr"] {
		c.APIAddr = "127.0.0.1:7420"
	}
	if !explicit["raft-addr"] {
		c.RaftAddr = "127.0.0.1:7421"
	}
	if !explicit["gossip-addr"] {
		c.GossipAddr = "127.0.0.1:7422"
	}
	if !explicit["bootstrap-expect"] && c.BootstrapExpect == 0 {
		c.BootstrapExpect = 1
	}
}

// Validate checks the configuration and fills derived defaults.
func (c *Config) Validate() error {
	if c.ID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return errors.New("--id is required (the host name is not available)")
		}
		c.ID = h
	}
	if c.DataDir == "" && !c.Dev {
		return errors.New("--data-dir is required (or use --dev)")
	}
	for name, addr := range map[string]string{"--api-addr": c.APIAddr, "--raft-addr": c.RaftAddr, "--gossip-addr": c.GossipAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s %q: %w", name, addr, err)
		}
	}
	if c.BootstrapExpect < 0 {
		return fmt.Errorf("--bootstrap-expect must not be negative, got %d", c.BootstrapExpect)
	}
	if c.Shards == 0 {
		c.Shards = 16
	}
	if c.TickInterval <= 0 {
		c.TickInterval = time.Second
	}
	if c.Replication < 0 {
		return fmt.Errorf("--replication must be at least 1, got %d", c.Replication)
	}
	if c.Replication == 0 {
		c.Replication = 3
	}
	for name, d := range map[string]time.Duration{"--raft-heartbeat-timeout": c.RaftHeartbeatTimeout, "--raft-commit-timeout": c.RaftCommitTimeout} {
		if d != 0 && d < 10*time.Millisecond {
			return fmt.Errorf("%s must be 0 (the default) or at least 10ms, got %v", name, d)
		}
	}
	hb := c.heartbeatTimeout()
	if c.RaftCoalesceWindow > hb/5 {
		return fmt.Errorf("--raft-coalesce-window must be at most a fifth of the heartbeat timeout (%v), got %v", hb, c.RaftCoalesceWindow)
	}
	switch c.LogStore {
	case "":
		c.LogStore = LogStoreAuto
	case LogStoreAuto, LogStoreShared, LogStorePerShard:
	default:
		return fmt.Errorf("--log-store must be %s, %s or %s, got %q", LogStoreAuto, LogStoreShared, LogStorePerShard, c.LogStore)
	}
	if c.MaxAppendEntries < 0 || c.MaxAppendEntries > shard.MaxAppendEntriesLimit {
		return fmt.Errorf("--raft-max-append-entries must be within 1..%d (0: the default), got %d", shard.MaxAppendEntriesLimit, c.MaxAppendEntries)
	}
	if c.DeadAfter < 0 {
		return fmt.Errorf("--dead-after must not be negative, got %v", c.DeadAfter)
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = 30 * time.Second
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = 500 * time.Millisecond
	}
	if c.LeaderSettle <= 0 {
		c.LeaderSettle = 5 * time.Second
	}
	return nil
}

// DefaultGCHeadroom is --gc-headroom's default: a node under W1 then
// collects every few seconds instead of every second, for up to 512 MiB
// more heap (BENCHMARKS.md, "The collector's bursts").
const DefaultGCHeadroom = 512 << 20

// sizeFlag is a byte count flag read by gctune.ParseSize ("512MiB", "1GiB").
type sizeFlag uint64

func (f *sizeFlag) String() string { return gctune.FormatSize(uint64(*f)) }

func (f *sizeFlag) Set(v string) error {
	n, err := gctune.ParseSize(v)
	if err != nil {
		return err
	}
	*f = sizeFlag(n)
	return nil
}

// The values of --log-store.
const (
	LogStoreAuto     = "auto"
	LogStoreShared   = "shared"
	LogStorePerShard = "per-shard"
)

// sharedLog resolves --log-store for the data dir dir: auto keeps what dir
// was written with and takes the shared store for a new one.
func (c *Config) sharedLog(dir string) (bool, error) {
	switch c.LogStore {
	case LogStoreShared:
		return true, nil
	case LogStorePerShard:
		return false, nil
	}
	shared, found, err := shard.DataDirLogStore(dir)
	if err != nil {
		return false, fmt.Errorf("--log-store auto: %w", err)
	}
	return shared || !found, nil
}

// advertiseFor is the address other nodes use for a listener bound to bind.
func (c *Config) advertiseFor(bind net.Addr) (string, error) {
	_, port, err := net.SplitHostPort(bind.String())
	if err != nil {
		return "", err
	}
	host := c.Advertise
	if host == "" {
		h, _, _ := net.SplitHostPort(bind.String())
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
			host = h
		} else {
			host, err = firstNonLoopbackIP()
			if err != nil {
				return "", fmt.Errorf("cannot pick an address to advertise (set --advertise): %w", err)
			}
		}
	}
	return net.JoinHostPort(host, port), nil
}

func firstNonLoopbackIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String(), nil
		}
	}
	return "", errors.New("no non-loopback IPv4 address")
}

// heartbeatTimeout is the shards' raft heartbeat timeout this config gives.
func (c *Config) heartbeatTimeout() time.Duration {
	hb := shard.LANTiming().HeartbeatTimeout
	if c.FastRaft {
		hb = shard.FastTiming().HeartbeatTimeout
	}
	return cmp.Or(c.RaftHeartbeatTimeout, hb)
}
