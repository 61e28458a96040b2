package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

const (
	consultP = frontdeskv1connect.DispatchServiceConsultProcedure
	batchP   = frontdeskv1connect.DispatchServiceBatchProcedure
)

// batchStats counts the Batch RPCs of calls, the calls they carried and
// the unary calls of procedure.
func batchStats(calls []fakeCall, procedure string) (batches, batched, unary int) {
	for _, c := range calls {
		switch {
		case c.procedure == batchP:
			batches++
		case c.procedure == procedure && c.batch == -1:
			batched++
		case c.procedure == procedure:
			unary++
		}
	}
	return
}

// consultAll makes n Consults for merchant at once, each with request id
// prefix-i, and returns their results and errors.
func consultAll(t *testing.T, ctx context.Context, c *Client, merchant, prefix string, n int) ([]*pb.Result, []error) {
	t.Helper()
	res, errs := make([]*pb.Result, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = c.Consult(WithRequestID(ctx, fmt.Sprintf("%s-%d", prefix, i)), &pb.Consult{MerchantId: merchant, BuyerId: fmt.Sprint(i)})
		}()
	}
	wg.Wait()
	return res, errs
}

// TestBatchingCoalesces: concurrent calls to one node go in far fewer
// RPCs than calls, each call gets its own result, and no call is sent
// twice.
func TestBatchingCoalesces(t *testing.T) {
	protocols(t, func(t *testing.T, p Protocol) {
		fc := newFakeCluster(t, 3, 4)
		fc.rpcDelay = 5 * time.Millisecond
		m := merchantOn(t, fc, 2)
		fc.setLeader(2, 1)
		c := newTestClient(t, fc, WithProtocol(p), WithBatching(64))
		fc.resetCalls()
		const n = 300
		res, errs := consultAll(t, testCtx(t, 10*time.Second), c, m, "co", n)
		for i := range n {
			if errs[i] != nil || res[i].GetSessionId() != fmt.Sprintf("s-co-%d", i) {
				t.Fatalf("call %d: want its own session s-co-%d, got %v, %v", i, i, res[i], errs[i])
			}
		}
		calls := fc.allCalls()
		batches, batched, unary := batchStats(calls, consultP)
		if batched+unary != n {
			t.Fatalf("want each of %d consults to reach the node once, got %d batched and %d alone", n, batched, unary)
		}
		seen := map[string]bool{}
		for _, c := range calls {
			if c.procedure == consultP {
				if seen[c.requestID] {
					t.Fatalf("request %s sent twice", c.requestID)
				}
				seen[c.requestID] = true
				if c.node != 1 {
					t.Fatalf("request %s went to node %d, not the leader", c.requestID, c.node)
				}
			}
			if c.procedure == batchP && c.batch > 64 {
				t.Fatalf("a batch of %d calls, more than WithBatching(64)", c.batch)
			}
		}
		if rpcs := batches + unary; rpcs > n/4 {
			t.Errorf("want concurrent calls coalesced: %d calls took %d RPCs (%d batches, %d alone)", n, rpcs, batches, unary)
		}
		t.Logf("%d calls in %d batches and %d unary RPCs", n, batches, unary)
	})
}

// TestBatchingOnByDefault: a client made without WithBatching coalesces
// concurrent calls, at most DefaultBatchCalls per Batch.
func TestBatchingOnByDefault(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	fc.rpcDelay = 5 * time.Millisecond
	c := newTestClient(t, fc)
	fc.resetCalls()
	const n = 300
	_, errs := consultAll(t, testCtx(t, 10*time.Second), c, "m", "on", n)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	calls := fc.allCalls()
	batches, batched, unary := batchStats(calls, consultP)
	if batched+unary != n || batches == 0 || batches+unary > n/4 {
		t.Fatalf("want %d consults coalesced by default, got %d batches of %d calls and %d unary", n, batches, batched, unary)
	}
	for _, c := range calls {
		if c.procedure == batchP && c.batch > DefaultBatchCalls {
			t.Fatalf("a batch of %d calls, more than DefaultBatchCalls (%d)", c.batch, DefaultBatchCalls)
		}
	}
}

// TestBatchingOff: with WithBatching(0) every call is its own unary RPC.
func TestBatchingOff(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	fc.rpcDelay = 2 * time.Millisecond
	c := newTestClient(t, fc, WithBatching(0))
	fc.resetCalls()
	_, errs := consultAll(t, testCtx(t, 10*time.Second), c, "m", "off", 50)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if batches, batched, unary := batchStats(fc.allCalls(), consultP); batches != 0 || batched != 0 || unary != 50 {
		t.Fatalf("want 50 unary consults and no batch, got %d batches of %d calls and %d unary", batches, batched, unary)
	}
}

// gate blocks the calls of one merchant until opened; it counts arrivals.
type gate struct {
	merchant string
	open     chan struct{}
	mu       sync.Mutex
	arrived  int
}

func newGate(merchant string) *gate { return &gate{merchant: merchant, open: make(chan struct{})} }

func (g *gate) wait(ctx context.Context, c fakeCall) bool {
	if c.merchant != g.merchant {
		return false
	}
	g.mu.Lock()
	g.arrived++
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-ctx.Done():
	}
	return true
}

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.arrived
}

// occupy sends a call for the gate's merchant, which holds the node's
// Batch RPC slot until the gate opens (the client must not treat it as
// stalled: withBatchStall(time.Hour)); it returns once the call has
// arrived, and a func that waits for its result.
func occupy(t *testing.T, ctx context.Context, c *Client, g *gate) func() {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Consult(ctx, &pb.Consult{MerchantId: g.merchant, BuyerId: "blocker"})
		errc <- err
	}()
	waitFor(t, func() bool { return g.count() == 1 })
	return func() {
		if err := <-errc; err != nil {
			t.Errorf("blocking call: %v", err)
		}
	}
}

// withBatchStall sets how long a Batch RPC may be out before calls go
// around it.
func withBatchStall(d time.Duration) Option {
	return func(c *config) { c.batchStall = d }
}

// queued is the number of calls waiting in the batcher of addr.
func queued(c *Client, addr string) int {
	ep := c.endpoint(c.routes.url(addr))
	ep.batch.mu.Lock()
	defer ep.batch.mu.Unlock()
	return len(ep.batch.queue)
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatchingErrorsPerCall: calls that go together in one Batch get their
// own answers: a FieldError for the bad one, BUSY with ErrBusy, results for
// the others — the errors a unary call would return.
func TestBatchingErrorsPerCall(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	g := newGate("blocker")
	fc.setHook(func(ctx context.Context, n *fakeNode, c fakeCall) (*pb.Result, error, bool) {
		if g.wait(ctx, c) {
			return &pb.Result{Outcome: pb.Outcome_OUTCOME_ASSIGNED}, nil, true
		}
		switch c.merchant {
		case "bad":
			return nil, fieldError(connect.CodeInvalidArgument, "consult.buyer_id", "invalid"), true
		case "full":
			return &pb.Result{Outcome: pb.Outcome_OUTCOME_BUSY}, nil, true
		case "gone":
			return nil, fieldError(connect.CodeNotFound, "session_id", "not_found"), true
		}
		return nil, nil, false
	})
	c := newTestClient(t, fc, WithBatching(16), withBatchStall(time.Hour))
	ctx := testCtx(t, 10*time.Second)
	done := occupy(t, ctx, c, g)
	fc.resetCalls()

	type answer struct {
		res *pb.Result
		err error
	}
	out := make([]answer, 4)
	var wg sync.WaitGroup
	for i, f := range []func() (*pb.Result, error){
		func() (*pb.Result, error) { return c.Consult(ctx, &pb.Consult{MerchantId: "good", BuyerId: "b"}) },
		func() (*pb.Result, error) { return c.Consult(ctx, &pb.Consult{MerchantId: "bad", BuyerId: "b"}) },
		func() (*pb.Result, error) { return c.Consult(ctx, &pb.Consult{MerchantId: "full", BuyerId: "b"}) },
		func() (*pb.Result, error) { return c.End(ctx, "gone", "s1", pb.EndReason_END_REASON_AGENT_ENDED) },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f()
			out[i] = answer{res, err}
		}()
	}
	waitFor(t, func() bool { return queued(c, fc.nodes[0].addr) == 4 })
	close(g.open)
	wg.Wait()
	done()

	if batches, batched, _ := batchStats(fc.allCalls(), consultP); batches != 1 || batched != 3 {
		t.Fatalf("want the four calls in one Batch (three consults), got %d batches carrying %d consults", batches, batched)
	}
	if out[0].err != nil || out[0].res.GetOutcome() != pb.Outcome_OUTCOME_ASSIGNED {
		t.Errorf("good: want ASSIGNED, got %v, %v", out[0].res, out[0].err)
	}
	var e *Error
	if !errors.As(out[1].err, &e) || !errors.Is(out[1].err, ErrInvalid) || e.Field != "consult.buyer_id" || e.Code != connect.CodeInvalidArgument ||
		e.Procedure != consultP || connect.CodeOf(out[1].err) != connect.CodeInvalidArgument {
		t.Errorf("bad: want an *Error INVALID_ARGUMENT on consult.buyer_id from Consult, got %#v", out[1].err)
	}
	if !errors.Is(out[2].err, ErrBusy) || out[2].res.GetOutcome() != pb.Outcome_OUTCOME_BUSY {
		t.Errorf("full: want BUSY with ErrBusy, got %v, %v", out[2].res, out[2].err)
	}
	if !errors.Is(out[3].err, ErrNotFound) || !errors.As(out[3].err, &e) || e.Field != "session_id" ||
		e.Procedure != frontdeskv1connect.DispatchServiceEndProcedure {
		t.Errorf("gone: want ErrNotFound on session_id from End, got %v", out[3].err)
	}
}

// TestBatchingContext: a call whose context ends while its Batch is out is
// indeterminate, like a unary call whose request went out; one whose
// context ends while it waits in the queue was never sent. The other
// calls of the batch are not affected.
func TestBatchingContext(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	g := newGate("blocker")
	slow := make(chan struct{})
	fc.setHook(func(ctx context.Context, n *fakeNode, c fakeCall) (*pb.Result, error, bool) {
		if g.wait(ctx, c) {
			return &pb.Result{Outcome: pb.Outcome_OUTCOME_ASSIGNED}, nil, true
		}
		if c.merchant == "slow" {
			select {
			case <-slow:
			case <-ctx.Done():
			}
		}
		return nil, nil, false
	})
	c := newTestClient(t, fc, WithBatching(16), withBatchStall(time.Hour))
	ctx := testCtx(t, 10*time.Second)
	done := occupy(t, ctx, c, g)

	// Queued behind the blocked RPCs, its context ends before it is sent.
	qctx, qcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer qcancel()
	_, err := c.Consult(WithRequestID(qctx, "queued"), &pb.Consult{MerchantId: "m", BuyerId: "q"})
	var re *RetryError
	if !errors.As(err, &re) || re.Indeterminate || errors.Is(err, ErrIndeterminate) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call whose context ended in the queue: want a determinate RetryError, got %v", err)
	}

	// In flight in one Batch: x's context ends, y waits for the node.
	xctx, xcancel := context.WithCancel(ctx)
	errs := make(chan error, 2)
	go func() {
		_, err := c.Consult(WithRequestID(xctx, "x"), &pb.Consult{MerchantId: "slow", BuyerId: "x"})
		errs <- err
	}()
	go func() {
		_, err := c.Consult(WithRequestID(ctx, "y"), &pb.Consult{MerchantId: "slow", BuyerId: "y"})
		errs <- err
	}()
	// x, y and the queued call whose caller has gone (left out when sent).
	waitFor(t, func() bool { return queued(c, fc.nodes[0].addr) == 3 })
	fc.resetCalls()
	close(g.open)
	waitFor(t, func() bool { return len(fc.callsTo(consultP)) >= 1 }) // the Batch reached the node
	xcancel()
	err = <-errs
	if !errors.As(err, &re) || !re.Indeterminate || !errors.Is(err, ErrIndeterminate) || !errors.Is(err, context.Canceled) || re.RequestID != "x" {
		t.Fatalf("a call canceled while its Batch is out: want an indeterminate RetryError for request x, got %v", err)
	}
	close(slow)
	if err := <-errs; err != nil {
		t.Fatalf("the other call of the batch: %v", err)
	}
	done()
	if batches, _, _ := batchStats(fc.allCalls(), consultP); batches != 1 {
		t.Fatalf("want x and y in one Batch, got %d batches", batches)
	}
}

// TestBatchingFollowsLeaderHints: calls batched to a node that no longer
// leads their shard each get UNAVAILABLE with a LeaderHint, follow it to
// the new leader with the same request id, and succeed there.
func TestBatchingFollowsLeaderHints(t *testing.T) {
	fc := newFakeCluster(t, 3, 2)
	fc.rpcDelay = 5 * time.Millisecond
	m := merchantOn(t, fc, 1)
	fc.setLeader(1, 0)
	c := newTestClient(t, fc, WithBatching(64))
	fc.setLeader(1, 2) // the client still thinks node 0 leads
	fc.resetCalls()
	const n = 100
	res, errs := consultAll(t, testCtx(t, 10*time.Second), c, m, "lh", n)
	for i := range n {
		if errs[i] != nil || res[i].GetSessionId() != fmt.Sprintf("s-lh-%d", i) {
			t.Fatalf("call %d: %v, %v", i, res[i], errs[i])
		}
	}
	byNode := map[int]map[string]bool{0: {}, 2: {}}
	batchesAt0 := 0
	for _, c := range fc.allCalls() {
		if c.procedure == consultP {
			byNode[c.node][c.requestID] = true
		}
		if c.procedure == batchP && c.node == 0 {
			batchesAt0++
		}
	}
	if len(byNode[2]) != n {
		t.Errorf("want all %d request ids to reach the new leader, got %d", n, len(byNode[2]))
	}
	if batchesAt0 == 0 {
		t.Errorf("want calls batched to the old leader (the redirects to come from a Batch), got no Batch there")
	}
	for id := range byNode[0] {
		if !byNode[2][id] {
			t.Errorf("request %s was redirected under another id", id)
		}
	}
}

// TestBatchingUnimplemented: a node that does not serve Batch gets each
// call as its own RPC, and the calls succeed.
func TestBatchingUnimplemented(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	fc.rpcDelay = 5 * time.Millisecond
	fc.noBatch = true
	c := newTestClient(t, fc, WithBatching(64))
	fc.resetCalls()
	_, errs := consultAll(t, testCtx(t, 10*time.Second), c, "m", "old", 50)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, c := range fc.callsTo(consultP) {
		ids[c.requestID] = true
	}
	if len(ids) != 50 {
		t.Fatalf("want all 50 consults as unary calls, got %d", len(ids))
	}
	if batches, _, _ := batchStats(fc.allCalls(), consultP); batches == 0 {
		t.Fatal("the batcher never tried Batch (the test would prove nothing)")
	}
}

func TestWithBatchingBounds(t *testing.T) {
	for in, want := range map[int]int{-1: 0, 0: 0, 1: 1, 256: 256, 100000: MaxBatchCalls} {
		var cfg config
		WithBatching(in)(&cfg)
		if cfg.batchMax != want {
			t.Errorf("WithBatching(%d): want %d, got %d", in, want, cfg.batchMax)
		}
	}
}

// TestBatchingStall: calls queued behind a Batch RPC that is out for
// longer than the stall time go in another RPC, up to
// maxBatchRPCsPerNode; past that they wait.
func TestBatchingStall(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	g := newGate("blocker")
	fc.setHook(func(ctx context.Context, n *fakeNode, c fakeCall) (*pb.Result, error, bool) {
		if g.wait(ctx, c) {
			return &pb.Result{Outcome: pb.Outcome_OUTCOME_ASSIGNED}, nil, true
		}
		return nil, nil, false
	})
	c := newTestClient(t, fc, WithBatching(16), withBatchStall(20*time.Millisecond))
	ctx := testCtx(t, 10*time.Second)

	// A stuck RPC does not hold up the next calls for long.
	done := occupy(t, ctx, c, g)
	start := time.Now()
	if _, err := c.Consult(ctx, &pb.Consult{MerchantId: "m", BuyerId: "b"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a call behind a stuck Batch took %v", d)
	}

	// Stuck RPCs: up to maxBatchRPCsPerNode of them, then calls wait.
	errs := make(chan error, maxBatchRPCsPerNode+1)
	for i := 1; i <= maxBatchRPCsPerNode; i++ {
		go func() {
			_, err := c.Consult(ctx, &pb.Consult{MerchantId: "blocker", BuyerId: fmt.Sprint(i)})
			errs <- err
		}()
		waitFor(t, func() bool { return g.count() == i+1 || g.count() == maxBatchRPCsPerNode })
	}
	if got := g.count(); got != maxBatchRPCsPerNode {
		t.Fatalf("want %d stuck RPCs at the node, got %d", maxBatchRPCsPerNode, got)
	}
	time.Sleep(100 * time.Millisecond) // five times the stall time
	if got, q := g.count(), queued(c, fc.nodes[0].addr); got != maxBatchRPCsPerNode || q != 1 {
		t.Fatalf("past the bound: want %d RPCs out and 1 call queued, got %d and %d", maxBatchRPCsPerNode, got, q)
	}
	close(g.open)
	done()
	for range maxBatchRPCsPerNode {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestBatchingDeadLeaderFailover: the leader's node resets every request
// (killed), so whole Batch RPCs fail; each of their calls is retried on
// its own and lands on the new leader with its own request id.
func TestBatchingDeadLeaderFailover(t *testing.T) {
	fc := newFakeCluster(t, 3, 4)
	fc.rpcDelay = 2 * time.Millisecond
	m := merchantOn(t, fc, 0)
	c := newTestClient(t, fc, WithBatching(64))
	fc.resetCalls()
	fc.nodes[0].down.Store(true)
	time.AfterFunc(50*time.Millisecond, func() { fc.setLeader(0, 2) }) // election
	const n = 100
	res, errs := consultAll(t, testCtx(t, 10*time.Second), c, m, "fo", n)
	for i := range n {
		if errs[i] != nil || res[i].GetSessionId() != fmt.Sprintf("s-fo-%d", i) {
			t.Fatalf("call %d across a failover: want s-fo-%d, got %v, %v", i, i, res[i], errs[i])
		}
	}
	ids := map[string]bool{}
	for _, call := range fc.callsTo(consultP) {
		if call.node == 2 {
			ids[call.requestID] = true
		}
	}
	if len(ids) != n {
		t.Errorf("want all %d request ids at the new leader, got %d", n, len(ids))
	}
	if batches, _, _ := batchStats(fc.allCalls(), consultP); batches == 0 {
		t.Errorf("want the calls batched (the test would prove nothing), got no Batch")
	}
}
