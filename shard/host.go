package shard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/shard/sharedlog"
)

// Host is this node's replicas of every shard it holds, sharing one Mux.
type Host struct {
	cfg    HostConfig
	shared *sharedlog.Store // every shard's log, with HostConfig.SharedLog

	// opMu serializes Open, HasState and Close, which open and close
	// stores (a bolt file can be opened once at a time).
	opMu   sync.Mutex
	mu     sync.Mutex // guards groups and closed
	groups map[uint32]*Group
	closed bool

	changed       notifier
	fastElections atomic.Uint64 // see fastelect.go
	earlyStands   atomic.Uint64 // of fastElections, those before their turn
	done          chan struct{} // closed by Close
	wg            sync.WaitGroup
}

// NewHost checks cfg and returns a Host with no replica open. With
// cfg.SharedLog it opens the shared store (closed by Close); without, it
// refuses a data dir that has one.
func NewHost(cfg HostConfig) (*Host, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	shared, err := openShared(&c)
	if err != nil {
		return nil, err
	}
	h := &Host{cfg: c, shared: shared, groups: make(map[uint32]*Group), done: make(chan struct{})}
	h.wg.Add(1)
	go h.watchPeers()
	return h, nil
}

// peerRefresh is how often, besides on leader changes, the Host updates
// the peers its Mux watches.
const peerRefresh = time.Second

// watchPeers keeps the Mux watching every other node that holds a replica
// of a shard this node holds, and starts elections at once in the shards
// whose leader's node is reported gone (fastelect.go).
func (h *Host) watchPeers() {
	defer h.wg.Done()
	mux := h.cfg.Mux
	mux.OnPeerDown(h.peerDown)
	defer func() {
		mux.OnPeerDown(nil)
		mux.WatchPeers(nil)
	}()
	t := time.NewTicker(peerRefresh)
	defer t.Stop()
	for {
		changed := h.changed.wait()
		mux.WatchPeers(h.peerAddrs())
		select {
		case <-h.done:
			return
		case <-changed:
		case <-t.C:
		}
	}
}

// peerAddrs returns the Raft addresses in the open replicas' latest
// configurations, this node's included.
func (h *Host) peerAddrs() []raft.ServerAddress {
	var out []raft.ServerAddress
	for _, g := range h.Groups() {
		f := g.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		for _, s := range f.Configuration().Servers {
			if !slices.Contains(out, s.Address) {
				out = append(out, s.Address)
			}
		}
	}
	return out
}

// peerDown is the Mux's report that the node at addr is gone.
func (h *Host) peerDown(addr raft.ServerAddress) {
	for _, g := range h.Groups() {
		g.peerGone(addr)
	}
}

// FastElections is how many elections this node's replicas started since
// the Host opened because their leader's node was reported gone (see
// fastelect.go).
func (h *Host) FastElections() uint64 { return h.fastElections.Load() }

// FastElectionsEarly is how many of FastElections a replica started before
// its turn, having refused the vote of a voter whose turn came first
// because that voter's log was behind its own (see fastelect.go).
func (h *Host) FastElectionsEarly() uint64 { return h.earlyStands.Load() }

// Open starts this node's replica of shard from its data directory: with
// existing state it rejoins the shard (restoring the latest snapshot and
// replaying the log once a leader tells it what is committed); without, it
// waits to be bootstrapped (Group.Bootstrap) or added by a leader. Opening
// an open shard returns its Group. It fails with ErrShutdown after Close.
func (h *Host) Open(shard uint32) (*Group, error) {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	return h.openLocked(shard)
}

// openLocked is Open with opMu held. Calls for different shards may run
// at once (OpenAll).
func (h *Host) openLocked(shard uint32) (*Group, error) {
	h.mu.Lock()
	g, open, closed := h.groups[shard], h.groups[shard] != nil, h.closed
	h.mu.Unlock()
	switch {
	case closed:
		return nil, fmt.Errorf("shard %d: open: %w", shard, ErrShutdown)
	case open:
		return g, nil
	}
	if err := h.dropOrphan(shard); err != nil {
		return nil, err
	}
	g, err := openGroup(&h.cfg, shard, &h.changed)
	if err != nil {
		return nil, err
	}
	g.fastElections = &h.fastElections
	g.fastElectionsEarly = &h.earlyStands
	h.mu.Lock()
	h.groups[shard] = g
	h.mu.Unlock()
	h.changed.notify()
	return g, nil
}

// OpenAll opens the replicas of shards, as Open does for each, several at
// a time: a replica with state restores its latest snapshot inside Open,
// one CPU-bound decode per shard, so a node restarting with many shards is
// ready sooner with them in parallel (BENCHMARKS.md, "Restart"). At most
// GOMAXPROCS open at once. It returns the groups in the order of shards;
// on an error, the first one by that order, the replicas that did open
// stay open (as they would after Opens one by one).
func (h *Host) OpenAll(shards []uint32) ([]*Group, error) {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	uniq := slices.Compact(slices.Sorted(slices.Values(shards)))
	opened := make([]*Group, len(uniq))
	errs := make([]error, len(uniq))
	slots := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, s := range uniq {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			opened[i], errs[i] = h.openLocked(s)
		}()
	}
	wg.Wait()
	groups := make([]*Group, len(shards))
	var first error
	for j, s := range shards {
		k, _ := slices.BinarySearch(uniq, s)
		groups[j] = opened[k]
		if first == nil {
			first = errs[k]
		}
	}
	return groups, first
}

// HasState reports whether this node has Raft state for shard on disk (a
// log, a term or a snapshot), open or not, as raft.HasExistingState does.
// It creates nothing for a shard never opened.
func (h *Host) HasState(shard uint32) (bool, error) {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	if g, ok := h.Group(shard); ok {
		return raft.HasExistingState(g.logs, g.store, g.snaps)
	}
	dir := shardDir(h.cfg.DataDir, shard)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	store, err := h.cfg.OpenStore(dir, shard)
	if err != nil {
		return false, fmt.Errorf("shard %d: %w", shard, err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, nil)
	if err != nil {
		return false, fmt.Errorf("shard %d: %w", shard, err)
	}
	return raft.HasExistingState(store, store, snaps)
}

// Group returns the open replica of shard.
func (h *Host) Group(shard uint32) (*Group, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g, ok := h.groups[shard]
	return g, ok
}

// Groups returns the open replicas, sorted by shard.
func (h *Host) Groups() []*Group {
	h.mu.Lock()
	out := make([]*Group, 0, len(h.groups))
	for _, g := range h.groups {
		out = append(out, g)
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b *Group) int { return int(a.shard) - int(b.shard) })
	return out
}

// LeaderChanged returns a channel closed at the next change of any open
// replica's Raft state or known leader, when a replica opens, and when the
// Host closes. See Group.LeaderChanged.
func (h *Host) LeaderChanged() <-chan struct{} { return h.changed.wait() }

// TransferLeadershipAway moves every leadership this node holds to another
// voter, all shards at once, and returns once this node leads nothing: what
// a node does on SIGTERM before closing, so that clients see no election
// timeout. Shards whose transfer fails, or that this node wins back, are
// tried again until ctx ends; the error then joins the last failures and
// ctx's error. A shard with no other voter (a one-node cluster) has nobody
// to hand the lead to and is left as it is; that is not an error.
func (h *Host) TransferLeadershipAway(ctx context.Context) error {
	for {
		var leading []*Group
		for _, g := range h.Groups() {
			switch {
			case !g.IsLeader():
			case len(g.Info().Voters) < 2:
				// nobody to hand the lead to
			default:
				leading = append(leading, g)
			}
		}
		if len(leading) == 0 {
			return nil
		}
		errs := make([]error, len(leading))
		var wg sync.WaitGroup
		for i, g := range leading {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = g.TransferLeadership(ctx, "")
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			return fmt.Errorf("shard: moving leadership away: %w", errors.Join(errs...))
		}
		if err := errors.Join(errs...); err != nil {
			h.cfg.Logger.Debug("leadership transfer failed; retrying", "err", err)
			select {
			case <-time.After(transferRetryPause):
			case <-ctx.Done():
			}
		}
	}
}

// transferRetryPause spaces the attempts of TransferLeadershipAway.
const transferRetryPause = 50 * time.Millisecond

// Close shuts every replica down (raft shutdown, transport layer and store
// closed), all at once, and returns their errors joined. Waiting proposals
// return ErrIndeterminate with ErrShutdown. It does not close the Mux.
// Further calls return nil.
func (h *Host) Close() error {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.done)
	groups := make([]*Group, 0, len(h.groups))
	for _, g := range h.groups {
		groups = append(groups, g)
	}
	h.mu.Unlock()
	h.wg.Wait()

	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.close()
		}()
	}
	wg.Wait()
	if h.shared != nil {
		errs = append(errs, h.shared.Close())
	}
	h.changed.notify()
	return errors.Join(errs...)
}

// SharedLogStats returns the shared store's counters (HostConfig.SharedLog);
// false without one.
func (h *Host) SharedLogStats() (sharedlog.Stats, bool) {
	if h.shared == nil {
		return sharedlog.Stats{}, false
	}
	return h.shared.Stats(), true
}
