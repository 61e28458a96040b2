package node

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/frontdeskhq/frontdesk/internal/hclogslog"
)

// meta is what a node tells the others about itself through gossip.
type meta struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft"`
	APIAddr  string `json:"api"`
	// Shards is the cluster's shard count once this node belongs to a formed
	// cluster (0 while it waits to form one).
	Shards uint32 `json:"shards,omitempty"`
	// Replication is the cluster's replication factor, with Shards.
	Replication int `json:"repl,omitempty"`
	// Draining: the node is being drained; placement gives it nothing.
	Draining bool `json:"draining,omitempty"`
	// Leads lists the shards this node leads (omitted if it does not fit).
	Leads []uint32 `json:"leads,omitempty"`
}

// member is a node as gossip last saw it.
type member struct {
	meta
	State string    // alive, suspect, dead, left
	Since time.Time // when this node first saw the member in State
}

// gone reports whether the member has been dead or left for longer than d.
func (m member) gone(now time.Time, d time.Duration) bool {
	return (m.State == "dead" || m.State == "left") && now.Sub(m.Since) >= d
}

// membership runs memberlist and keeps the latest view of the members.
type membership struct {
	list *memberlist.Memberlist
	log  *slog.Logger

	mu      sync.Mutex
	self    meta
	members map[string]member // by node id
	changed chan struct{}     // closed and replaced on every change
}

// newMembership starts gossip; a non-nil key encrypts it (AES, memberlist's keyring).
func newMembership(cfg *Config, self meta, log *slog.Logger, key []byte) (*membership, error) {
	m := &membership{self: self, log: log, members: map[string]member{}, changed: make(chan struct{})}
	host, portStr, err := net.SplitHostPort(cfg.GossipAddr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("--gossip-addr port: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	if cfg.FastRaft {
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.GossipInterval = 50 * time.Millisecond
		mc.PushPullInterval = 2 * time.Second
	}
	mc.Name = self.ID
	// A node restarted on another address (a container with a new IP) may
	// take its name back once the old one is known dead.
	mc.DeadNodeReclaimTime = time.Second
	if host == "" {
		host = "0.0.0.0"
	}
	mc.BindAddr, mc.BindPort = host, port
	adv, err := cfg.advertiseFor(&net.TCPAddr{IP: net.ParseIP(host), Port: port})
	if err != nil {
		return nil, err
	}
	advHost, advPortStr, _ := net.SplitHostPort(adv)
	advPort, _ := strconv.Atoi(advPortStr)
	if port == 0 {
		advPort = 0 // memberlist picks the bound port
	}
	mc.AdvertiseAddr, mc.AdvertisePort = advHost, advPort
	mc.Delegate = m
	mc.Events = m
	if key != nil {
		mc.SecretKey = key
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Logger = hclogslog.New(log.With("component", "memberlist")).StandardLogger(nil)
	list, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.GossipAddr, err)
	}
	m.list = list
	return m, nil
}

// join contacts existing members; it retries until one answers or timeout.
func (m *membership) join(addrs []string, timeout time.Duration) error {
	if len(addrs) == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		n, err := m.list.Join(addrs)
		if n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("join %v: %w", addrs, err)
		}
		m.log.Info("waiting to join", "addrs", addrs, "err", err)
		time.Sleep(500 * time.Millisecond)
	}
}

// update changes this node's metadata and gossips it.
func (m *membership) update(fn func(*meta)) {
	m.mu.Lock()
	fn(&m.self)
	m.mu.Unlock()
	if err := m.list.UpdateNode(2 * time.Second); err != nil {
		m.log.Warn("gossip metadata update", "err", err)
	}
}

// snapshot returns the members sorted by id and a channel closed on the next change.
func (m *membership) snapshot() ([]member, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]member, 0, len(m.members))
	for _, mb := range m.members {
		out = append(out, mb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, m.changed
}

func (m *membership) get(id string) (member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mb, ok := m.members[id]
	return mb, ok
}

func (m *membership) leave(timeout time.Duration) {
	if err := m.list.Leave(timeout); err != nil {
		m.log.Warn("gossip leave", "err", err)
	}
	_ = m.list.Shutdown()
}

func (m *membership) record(n *memberlist.Node, state string) {
	var md meta
	if err := json.Unmarshal(n.Meta, &md); err != nil || md.ID == "" {
		m.log.Warn("ignoring member with unreadable metadata", "name", n.Name, "err", err)
		return
	}
	m.mu.Lock()
	since := time.Now()
	old, known := m.members[md.ID]
	if known && old.State == state {
		since = old.Since
	}
	if known && md.Shards == 0 && old.Shards > 0 {
		// Once a member of the formed cluster, always one: a node that
		// restarts without its data is still the same member to placement.
		md.Shards, md.Replication = old.Shards, old.Replication
	}
	m.members[md.ID] = member{meta: md, State: state, Since: since}
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// memberlist.Delegate

func (m *membership) NodeMeta(limit int) []byte {
	m.mu.Lock()
	md := m.self
	m.mu.Unlock()
	b, _ := json.Marshal(md)
	if len(b) > limit {
		md.Leads = nil
		b, _ = json.Marshal(md)
	}
	return b
}
func (m *membership) NotifyMsg([]byte)                           {}
func (m *membership) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *membership) LocalState(join bool) []byte                { return nil }
func (m *membership) MergeRemoteState(buf []byte, join bool)     {}

// memberlist.EventDelegate

func (m *membership) NotifyJoin(n *memberlist.Node)   { m.record(n, "alive") }
func (m *membership) NotifyUpdate(n *memberlist.Node) { m.record(n, stateName(n.State)) }
func (m *membership) NotifyLeave(n *memberlist.Node) {
	state := "dead"
	if n.State == memberlist.StateLeft {
		state = "left"
	}
	m.record(n, state)
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateLeft:
		return "left"
	}
	return "dead"
}
