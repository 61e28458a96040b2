package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/auth"
)

// Limits are this node's admission controls. They are local to the node
// that receives a call (for writes, the shard leader), not replicated.
type Limits struct {
	// ConsultRate is each merchant's sustained consults per second on this
	// node (0: unlimited); ConsultBurst how many may come at once.
	ConsultRate  float64
	ConsultBurst int
	// StreamsPerCaller bounds the event streams one caller holds open at
	// once (0: unlimited). A caller is its token's identity, or its IP
	// address when auth is off.
	StreamsPerCaller int
}

// DefaultLimits: generous enough for a Singles' Day shop on one shard,
// tight enough that one shop's flood cannot take a node's every core.
func DefaultLimits() Limits {
	return Limits{ConsultRate: 10_000, ConsultBurst: 20_000, StreamsPerCaller: 32}
}

// limiter applies Limits.
type limiter struct {
	l   Limits
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
	streams map[string]int
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(l Limits) *limiter {
	return &limiter{l: l, now: time.Now, buckets: map[string]*bucket{}, streams: map[string]int{}}
}

// admitConsult takes a token from the merchant's bucket, or answers
// RESOURCE_EXHAUSTED with a Retry-After (seconds) when there is none.
func (lm *limiter) admitConsult(merchant string) error {
	if lm == nil || lm.l.ConsultRate <= 0 {
		return nil
	}
	burst := float64(max(lm.l.ConsultBurst, 1))
	now := lm.now()
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.sweep(now, burst)
	b := lm.buckets[merchant]
	if b == nil {
		b = &bucket{tokens: burst, at: now}
		lm.buckets[merchant] = b
	}
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.at).Seconds()*lm.l.ConsultRate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return nil
	}
	wait := time.Duration((1 - b.tokens) / lm.l.ConsultRate * float64(time.Second))
	ce := connect.NewError(connect.CodeResourceExhausted,
		fmt.Errorf("dispatch: merchant %q is over its consult rate of %.0f/s; retry after %v", merchant, lm.l.ConsultRate, wait.Round(time.Millisecond)))
	ce.Meta().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	return ce
}

// sweep forgets buckets that have refilled completely (at most once a minute).
func (lm *limiter) sweep(now time.Time, burst float64) {
	if now.Sub(lm.swept) < time.Minute {
		return
	}
	lm.swept = now
	for m, b := range lm.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*lm.l.ConsultRate >= burst {
			delete(lm.buckets, m)
		}
	}
}

var errTooManyStreams = errors.New("dispatch: too many open event streams for this caller")

// openStream counts a stream for a caller; the returned func releases it.
func (lm *limiter) openStream(ctx context.Context, peer string) (func(), error) {
	if lm == nil || lm.l.StreamsPerCaller <= 0 {
		return func() {}, nil
	}
	key := callerKey(ctx, peer)
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if lm.streams[key] >= lm.l.StreamsPerCaller {
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%w (%d)", errTooManyStreams, lm.l.StreamsPerCaller))
	}
	lm.streams[key]++
	return func() {
		lm.mu.Lock()
		defer lm.mu.Unlock()
		if lm.streams[key]--; lm.streams[key] <= 0 {
			delete(lm.streams, key)
		}
	}, nil
}

// callerKey identifies a caller: its token's identity, else its IP.
func callerKey(ctx context.Context, peer string) string {
	if c := auth.FromContext(ctx); c != nil {
		return string(c.Role) + "|" + c.Agent + "|" + strings.Join(c.Merchants, ",")
	}
	if host, _, ok := strings.Cut(peer, ":"); ok && !strings.Contains(peer, "]") {
		return host
	}
	return peer
}
