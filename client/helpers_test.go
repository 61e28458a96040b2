package client

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/internal/testutil"
)

// protocols runs a test over each RPC protocol the cluster serves.
func protocols(t *testing.T, f func(t *testing.T, p Protocol)) {
	t.Helper()
	for _, p := range []struct {
		name string
		p    Protocol
	}{{"connect", ProtocolConnect}, {"grpc", ProtocolGRPC}} {
		t.Run(p.name, func(t *testing.T) { f(t, p.p) })
	}
}

// newTestClient connects to fc with fast retries and logs to t.
func newTestClient(t *testing.T, fc *fakeCluster, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts = append([]Option{WithRetry(time.Millisecond, 10*time.Millisecond), WithLogger(testLogger(t))}, opts...)
	c, err := New(ctx, fc.addrs(), opts...)
	if err != nil {
		t.Fatalf("New(%v): %v", fc.addrs(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testCtx is a context bounded by d and the test.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// merchantOn returns a merchant id whose shard is s.
func merchantOn(t *testing.T, fc *fakeCluster, s uint32) string {
	t.Helper()
	for i := range 10000 {
		m := fmt.Sprintf("shop-%d", i)
		if fc.fakeShard(m) == s {
			return m
		}
	}
	t.Fatalf("no merchant id found for shard %d", s)
	return ""
}

// testLogger logs at debug level to the test's log (testutil.Logger).
func testLogger(t *testing.T) *slog.Logger { return testutil.Logger(t, slog.LevelDebug) }

// requestIDs returns the request ids of calls.
func requestIDs(calls []fakeCall) []string {
	var ids []string
	for _, c := range calls {
		ids = append(ids, c.requestID)
	}
	return ids
}

// nodesOf returns the nodes of calls.
func nodesOf(calls []fakeCall) []int {
	var out []int
	for _, c := range calls {
		out = append(out, c.node)
	}
	return out
}

// withOnBackoff runs f before each backoff wait of a call, with the number
// of attempts made so far.
func withOnBackoff(f func(attempts int)) Option {
	return func(c *config) { c.onBackoff = f }
}
