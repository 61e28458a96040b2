package client

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// ForMerchant is the shard of a merchant among n shards: FNV-1a (32-bit) of
// the merchant id's bytes, modulo n. It is the server's function (package
// shard); the client keeps its own copy so it imports no server package.
// n == 0 gives 0.
func ForMerchant(merchantID string, n uint32) uint32 {
	if n == 0 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(merchantID))
	return h.Sum32() % n
}

// routes is the client's view of the cluster: the shard count, each shard's
// leader and replicas, and every API address it knows. Addresses are base
// URLs ("http://host:port").
type routes struct {
	scheme string

	mu       sync.Mutex
	replicas [][]string // per shard: voters' addresses
	addrs    []string   // seeds, then addresses learned from the map
	next     int        // rotation through addrs
	gen      uint64     // counts applied shard maps

	refreshing chan struct{} // a one-slot lock that honours contexts

	// view holds the shard count and each shard's leader, read without
	// mu: every call reads them (its shard, its target) and they change
	// only with a shard map or a leader hint, while calls from many
	// goroutines contended for mu (BENCHMARKS.md, fourteenth session).
	// Writers hold mu and replace it whole.
	view atomic.Pointer[routeView]
}

// routeView is the shard count and each shard's leader ("" when unknown);
// never changed once stored.
type routeView struct {
	shards  uint32
	leaders []string
}

// setLeaderLocked stores a view with shard's leader set to addr, if the
// shard exists; callers hold mu.
func (r *routes) setLeaderLocked(shard int, addr string) {
	v := r.view.Load()
	if shard < 0 || shard >= len(v.leaders) {
		return
	}
	leaders := slices.Clone(v.leaders)
	leaders[shard] = addr
	r.view.Store(&routeView{shards: v.shards, leaders: leaders})
}

func newRoutes(scheme string, seeds []string) (*routes, error) {
	r := &routes{scheme: scheme, refreshing: make(chan struct{}, 1)}
	r.view.Store(&routeView{})
	for _, s := range seeds {
		u, err := baseURL(scheme, s)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(r.addrs, u) {
			r.addrs = append(r.addrs, u)
		}
	}
	if len(r.addrs) == 0 {
		return nil, errors.New("client: no addresses")
	}
	return r, nil
}

// baseURL turns "host:port" or a URL into a base URL without a trailing
// slash.
func baseURL(scheme, addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("client: empty address")
	}
	if !strings.Contains(addr, "://") {
		addr = scheme + "://" + addr
	}
	return strings.TrimRight(addr, "/"), nil
}

func (r *routes) url(addr string) string {
	u, err := baseURL(r.scheme, addr)
	if err != nil {
		return ""
	}
	return u
}

func (r *routes) shardCount() uint32 { return r.view.Load().shards }

func (r *routes) generation() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen
}

// any returns the next known address in rotation.
func (r *routes) any() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.anyLocked("")
}

// anyLocked returns the next known address in rotation other than avoid
// (unless it is the only one).
func (r *routes) anyLocked(avoid string) string {
	for range len(r.addrs) {
		a := r.addrs[r.next%len(r.addrs)]
		r.next++
		if a != avoid {
			return a
		}
	}
	return avoid
}

// leader returns the cached leader of a shard, or "" when unknown.
func (r *routes) leader(shard uint32) string {
	v := r.view.Load()
	if shard >= uint32(len(v.leaders)) {
		return ""
	}
	return v.leaders[shard]
}

// target picks the address of an attempt. Shard calls go to the cached
// leader; when it is unknown or just failed, to another node, which names
// the leader in its answer. anyReplica calls (stale reads, event streams)
// that failed go to the shard's replicas in rotation. failed is the
// address of the previous failed attempt, "" if none.
func (r *routes) target(shard int, anyReplica bool, failed string) string {
	if v := r.view.Load(); shard >= 0 && shard < len(v.leaders) {
		if l := v.leaders[shard]; l != "" && l != failed {
			return l
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.view.Load()
	if shard < 0 || shard >= len(v.leaders) {
		return r.anyLocked(failed)
	}
	l := v.leaders[shard]
	if l != "" && l != failed {
		return l
	}
	if anyReplica {
		cands := make([]string, 0, len(r.replicas[shard])+1)
		for _, a := range append([]string{l}, r.replicas[shard]...) {
			if a != "" && a != failed && !slices.Contains(cands, a) {
				cands = append(cands, a)
			}
		}
		if len(cands) > 0 {
			a := cands[r.next%len(cands)]
			r.next++
			return a
		}
	}
	return r.anyLocked(failed)
}

// setLeader records a leader named by a LeaderHint.
func (r *routes) setLeader(shard uint32, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setLeaderLocked(int(shard), addr)
	r.learnLocked(addr)
}

// forget clears a shard's cached leader if it is still addr.
func (r *routes) forget(shard int, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if shard >= 0 && r.leader(uint32(shard)) == addr {
		r.setLeaderLocked(shard, "")
	}
}

func (r *routes) learnLocked(addr string) {
	if addr != "" && !slices.Contains(r.addrs, addr) {
		r.addrs = append(r.addrs, addr)
	}
}

// apply replaces the view with a shard map.
func (r *routes) apply(m *pb.GetShardMapResponse) error {
	if m.GetShards() == 0 {
		return errors.New("client: the node reports no shards (cluster not formed yet)")
	}
	nodes := make(map[string]string, len(m.GetNodes()))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range m.GetNodes() {
		if n.GetApiAddr() == "" {
			continue
		}
		u := r.url(n.GetApiAddr())
		nodes[n.GetId()] = u
		if n.GetState() != "dead" && n.GetState() != "left" {
			r.learnLocked(u)
		}
	}
	n := m.GetShards()
	leaders := slices.Clone(r.view.Load().leaders)
	if uint32(len(leaders)) != n {
		leaders = make([]string, n)
		r.replicas = make([][]string, n)
	}
	for _, si := range m.GetShardInfos() {
		s := si.GetShard()
		if s >= n {
			continue
		}
		leaders[s] = ""
		if a := si.GetLeaderApiAddr(); a != "" {
			leaders[s] = r.url(a)
			r.learnLocked(leaders[s])
		} else if a, ok := nodes[si.GetLeaderId()]; ok {
			leaders[s] = a
		}
		var reps []string
		for _, id := range si.GetVoterIds() {
			if a, ok := nodes[id]; ok {
				reps = append(reps, a)
			}
		}
		r.replicas[s] = reps
	}
	r.view.Store(&routeView{shards: n, leaders: leaders})
	r.gen++
	return nil
}

// refresh fetches the shard map from the known addresses in rotation and
// applies the first answer. Callers pass the generation they saw before
// deciding to refresh; if another caller refreshed since, refresh returns
// at once, so a failing shard costs one GetShardMap per backoff step, not
// one per waiting call.
func (c *Client) refresh(ctx context.Context, seen uint64) error {
	r := c.routes
	select {
	case r.refreshing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.refreshing }()
	if r.generation() != seen {
		return nil
	}
	r.mu.Lock()
	n := len(r.addrs)
	r.mu.Unlock()
	var last error
	for range n {
		if ctx.Err() != nil {
			break
		}
		addr := r.any()
		m, err := c.fetchMap(ctx, addr)
		if err == nil {
			err = r.apply(m)
		}
		if err == nil {
			c.cfg.log.Debug("shard map refreshed", slog.String("from", addr), slog.Uint64("shards", uint64(m.GetShards())))
			return nil
		}
		c.cfg.log.Debug("shard map refresh failed", slog.String("from", addr), slog.Any("err", err))
		last = err
	}
	if last == nil {
		last = ctx.Err()
	}
	return fmt.Errorf("client: refresh shard map: %w", last)
}

// mapTimeout bounds one GetShardMap request, which a node answers from
// memory: a hung node must not hold up a refresh for a whole call timeout.
const mapTimeout = time.Second

// fetchMap asks one node for its shard map.
func (c *Client) fetchMap(ctx context.Context, addr string) (*pb.GetShardMapResponse, error) {
	d := mapTimeout
	if c.cfg.callTimeout > 0 {
		d = min(d, c.cfg.callTimeout)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	resp, err := c.endpoint(addr).cluster.GetShardMap(ctx, connect.NewRequest(&pb.GetShardMapRequest{}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}
