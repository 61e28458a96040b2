package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

const consultProc = frontdeskv1connect.DispatchServiceConsultProcedure

// TestLeaderHintRetriedAtOnce: a node that is no longer the leader answers
// UNAVAILABLE naming the new one; the client retries there at once, with
// the same request id, and remembers the new leader.
func TestLeaderHintRetriedAtOnce(t *testing.T) {
	protocols(t, func(t *testing.T, p Protocol) {
		fc := newFakeCluster(t, 3, 4)
		// A long backoff: only a hint-driven retry can finish in time.
		c := newTestClient(t, fc, WithProtocol(p), WithRetry(2*time.Second, 4*time.Second))
		m := merchantOn(t, fc, 3)
		fc.setLeader(3, 2) // the client still believes node 0 leads

		start := time.Now()
		res, err := c.Consult(testCtx(t, 5*time.Second), &pb.Consult{MerchantId: m, BuyerId: "b"})
		if err != nil {
			t.Fatalf("Consult: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Consult took %v, want an immediate retry at the hinted leader", d)
		}
		calls := fc.callsTo(consultProc)
		if got := nodesOf(calls); !slices.Equal(got, []int{0, 2}) {
			t.Fatalf("Consult went to nodes %v, want [0 2]", got)
		}
		if ids := requestIDs(calls); ids[0] != ids[1] || ids[0] == "" {
			t.Fatalf("request ids %q, want the same id on both attempts", ids)
		}
		if res.GetSessionId() != "s-"+calls[0].requestID {
			t.Errorf("result %v, want the hinted leader's answer", res)
		}
		if n := len(fc.callsTo(frontdeskv1connect.ClusterServiceGetShardMapProcedure)); n != 1 {
			t.Errorf("%d shard map requests, want only New's", n)
		}

		// The cache learned the leader: the next call goes straight there,
		// with the caller's request id.
		if _, err := c.Consult(WithRequestID(testCtx(t, 5*time.Second), "req-2"), &pb.Consult{MerchantId: m, BuyerId: "b2"}); err != nil {
			t.Fatal(err)
		}
		calls = fc.callsTo(consultProc)[2:]
		if len(calls) != 1 || calls[0].node != 2 || calls[0].requestID != "req-2" {
			t.Fatalf("second Consult: %+v, want one call at node 2 with id req-2", calls)
		}
	})
}

// TestUnavailableWithoutHintRefreshesMap: a node that knows no leader
// answers UNAVAILABLE without an address; the client backs off, refreshes
// the shard map and retries at the leader it names, with the same id.
func TestUnavailableWithoutHintRefreshesMap(t *testing.T) {
	protocols(t, func(t *testing.T, p Protocol) {
		fc := newFakeCluster(t, 3, 4)
		const min = 40 * time.Millisecond
		c := newTestClient(t, fc, WithProtocol(p), WithRetry(min, 2*min))
		m := merchantOn(t, fc, 1)
		fc.setLeader(1, 1)
		fc.setHook(func(ctx context.Context, n *fakeNode, call fakeCall) (*pb.Result, error, bool) {
			if n.idx == 0 {
				return nil, n.fc.unavailable(1, -1, false), true
			}
			return nil, nil, false
		})

		start := time.Now()
		if _, err := c.Escalate(testCtx(t, 5*time.Second), m, "s"); err != nil {
			t.Fatalf("Escalate: %v", err)
		}
		if d := time.Since(start); d < min/2 {
			t.Errorf("retried after %v, want a backoff of at least %v", d, min/2)
		}
		var seq []string
		for _, call := range fc.allCalls() {
			seq = append(seq, call.procedure)
		}
		want := []string{
			frontdeskv1connect.ClusterServiceGetShardMapProcedure, // New
			frontdeskv1connect.DispatchServiceEscalateProcedure,   // node 0: no leader known
			frontdeskv1connect.ClusterServiceGetShardMapProcedure, // refresh
			frontdeskv1connect.DispatchServiceEscalateProcedure,   // node 1
		}
		if !slices.Equal(seq, want) {
			t.Fatalf("calls %q, want %q", seq, want)
		}
		calls := fc.callsTo(frontdeskv1connect.DispatchServiceEscalateProcedure)
		if nodesOf(calls)[1] != 1 || calls[0].requestID != calls[1].requestID {
			t.Fatalf("escalations %+v, want the retry at node 1 with the same id", calls)
		}
	})
}

// TestDeadLeaderFailover: the leader's node resets every request (killed);
// once another node leads, the call lands there with the same id.
func TestDeadLeaderFailover(t *testing.T) {
	fc := newFakeCluster(t, 3, 4)
	c := newTestClient(t, fc)
	m := merchantOn(t, fc, 0)
	fc.nodes[0].down.Store(true)
	time.AfterFunc(50*time.Millisecond, func() { fc.setLeader(0, 2) }) // election

	ctx := WithRequestID(testCtx(t, 5*time.Second), "failover-1")
	res, err := c.Consult(ctx, &pb.Consult{MerchantId: m, BuyerId: "b"})
	if err != nil {
		t.Fatalf("Consult across a failover: %v", err)
	}
	if res.GetSessionId() != "s-failover-1" {
		t.Errorf("result %v, want the new leader's answer to failover-1", res)
	}
	for _, call := range fc.callsTo(consultProc) {
		if call.requestID != "failover-1" {
			t.Errorf("attempt at node %d carried %q, want failover-1", call.node, call.requestID)
		}
	}
}

// TestErrorsNotRetried: errors about the request come back at once, typed.
func TestErrorsNotRetried(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		sentinel error
		field    string
	}{
		{"invalid", fieldError(connect.CodeInvalidArgument, "consult.buyer_id", "invalid"), ErrInvalid, "consult.buyer_id"},
		{"not found", fieldError(connect.CodeNotFound, "merchant_id", "not_found"), ErrNotFound, "merchant_id"},
		{"limit", fieldError(connect.CodeFailedPrecondition, "preferred_agent_id", "limit"), ErrLimit, "preferred_agent_id"},
		{"conflict", fieldError(connect.CodeFailedPrecondition, "session_id", "conflict"), ErrConflict, "session_id"},
		{"permission denied", connect.NewError(connect.CodePermissionDenied, errors.New("no")), nil, ""},
		{"unauthenticated", connect.NewError(connect.CodeUnauthenticated, errors.New("who")), nil, ""},
		{"internal", connect.NewError(connect.CodeInternal, errors.New("bug")), nil, ""},
	}
	protocols(t, func(t *testing.T, p Protocol) {
		fc := newFakeCluster(t, 1, 4)
		c := newTestClient(t, fc, WithProtocol(p))
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				fc.resetCalls()
				fc.setHook(func(context.Context, *fakeNode, fakeCall) (*pb.Result, error, bool) { return nil, tc.err, true })
				res, err := c.Consult(testCtx(t, 5*time.Second), &pb.Consult{MerchantId: "m", BuyerId: "b"})
				if err == nil || res != nil {
					t.Fatalf("Consult = %v, %v; want an error and no result", res, err)
				}
				if n := len(fc.callsTo(consultProc)); n != 1 {
					t.Errorf("%d attempts, want 1 (no retry)", n)
				}
				want := connect.CodeOf(tc.err)
				if got := connect.CodeOf(err); got != want {
					t.Errorf("code %v, want %v", got, want)
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("error %T %v, want an *Error", err, err)
				}
				if e.Field != tc.field || e.Code != want || e.Procedure != consultProc {
					t.Errorf("*Error %+v, want field %q code %v", e, tc.field, want)
				}
				if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
					t.Errorf("error %v does not match %v", err, tc.sentinel)
				}
				for _, other := range []error{ErrInvalid, ErrNotFound, ErrLimit, ErrConflict, ErrUnavailable, ErrIndeterminate, ErrBusy} {
					if other != tc.sentinel && errors.Is(err, other) {
						t.Errorf("error %v also matches %v", err, other)
					}
				}
			})
		}
	})
}

func TestBusyReturnsResultAndErrBusy(t *testing.T) {
	fc := newFakeCluster(t, 1, 4)
	c := newTestClient(t, fc)
	fc.setHook(func(context.Context, *fakeNode, fakeCall) (*pb.Result, error, bool) {
		return &pb.Result{Outcome: pb.Outcome_OUTCOME_BUSY, Surge: pb.SurgeLevel_SURGE_LEVEL_BREAKER}, nil, true
	})
	res, err := c.Consult(testCtx(t, 5*time.Second), &pb.Consult{MerchantId: "m", BuyerId: "b"})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("error %v, want ErrBusy", err)
	}
	if res.GetOutcome() != pb.Outcome_OUTCOME_BUSY || res.GetSurge() != pb.SurgeLevel_SURGE_LEVEL_BREAKER {
		t.Errorf("result %v, want the BUSY result alongside ErrBusy", res)
	}
	if n := len(fc.callsTo(consultProc)); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// TestIndeterminate: when the context ends after an attempt whose outcome
// is unknown, the error says so and names the request id to retry with.
func TestIndeterminate(t *testing.T) {
	cases := []struct {
		name string
		// hook answers every Consult attempt.
		hook          func(ctx context.Context, n *fakeNode) error
		indeterminate bool
	}{
		{"unavailable indeterminate", func(_ context.Context, n *fakeNode) error {
			return n.fc.unavailable(0, n.idx, true)
		}, true},
		{"stream reset after the request was sent", func(context.Context, *fakeNode) error {
			panic(http.ErrAbortHandler)
		}, true},
		{"attempt timeout", func(ctx context.Context, n *fakeNode) error {
			<-ctx.Done()
			return ctx.Err()
		}, true},
		{"not the leader, no leader known", func(_ context.Context, n *fakeNode) error {
			return n.fc.unavailable(0, -1, false)
		}, false},
	}
	protocols(t, func(t *testing.T, p Protocol) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				fc := newFakeCluster(t, 1, 1)
				// The caller gives up while the client waits after the
				// second attempt, so the call ends between attempts.
				ctx, cancel := context.WithCancel(testCtx(t, 5*time.Second))
				c := newTestClient(t, fc, WithProtocol(p), WithCallTimeout(50*time.Millisecond),
					WithRetry(time.Millisecond, time.Millisecond), withOnBackoff(func(attempts int) {
						if attempts == 2 {
							cancel()
						}
					}))
				fc.setHook(func(ctx context.Context, node *fakeNode, call fakeCall) (*pb.Result, error, bool) {
					return nil, tc.hook(ctx, node), true
				})
				_, err := c.Consult(ctx, &pb.Consult{MerchantId: "m", BuyerId: "b"})
				if got := errors.Is(err, ErrIndeterminate); got != tc.indeterminate {
					t.Fatalf("errors.Is(%v, ErrIndeterminate) = %v, want %v", err, got, tc.indeterminate)
				}
				if !errors.Is(err, context.Canceled) {
					t.Errorf("error %v does not match context.Canceled", err)
				}
				var re *RetryError
				if !errors.As(err, &re) {
					t.Fatalf("error %T, want a *RetryError", err)
				}
				calls := fc.callsTo(consultProc)
				if len(calls) != 2 || re.Attempts != 2 {
					t.Errorf("%d attempts seen by the node, RetryError says %d; want 2", len(calls), re.Attempts)
				}
				for _, call := range calls {
					if call.requestID != re.RequestID {
						t.Errorf("attempt carried %q, want %q on every attempt", call.requestID, re.RequestID)
					}
				}
			})
		}
	})
}

// TestIndeterminateAtDeadline: repeated indeterminate failures until the
// deadline.
func TestIndeterminateAtDeadline(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	c := newTestClient(t, fc, WithRetry(5*time.Millisecond, 20*time.Millisecond))
	fc.setHook(func(_ context.Context, n *fakeNode, _ fakeCall) (*pb.Result, error, bool) {
		return nil, n.fc.unavailable(0, n.idx, true), true
	})
	_, err := c.Transfer(testCtx(t, 200*time.Millisecond), &pb.Transfer{MerchantId: "m", SessionId: "s", ToAgentId: "a"})
	if !errors.Is(err, ErrIndeterminate) || !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want ErrIndeterminate, ErrUnavailable and context.DeadlineExceeded", err)
	}
	if n := len(fc.callsTo(frontdeskv1connect.DispatchServiceTransferProcedure)); n < 3 {
		t.Errorf("%d attempts in 200ms, want retries until the deadline", n)
	}
}

// TestUnreachableIsNotIndeterminate: requests that never left (connection
// refused) cannot have been applied; reads are never indeterminate.
func TestUnreachableIsNotIndeterminate(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	c := newTestClient(t, fc, WithRetry(5*time.Millisecond, 20*time.Millisecond))
	fc.setHook(func(context.Context, *fakeNode, fakeCall) (*pb.Result, error, bool) {
		panic(http.ErrAbortHandler)
	})
	_, err := c.GetSession(testCtx(t, 200*time.Millisecond), "m", "s")
	if err == nil || errors.Is(err, ErrIndeterminate) {
		t.Errorf("read error %v, want an error that is not ErrIndeterminate", err)
	}

	fc.nodes[0].srv.Close()
	c.hc.CloseIdleConnections() // forget the old connection: every attempt dials
	_, err = c.Consult(testCtx(t, 200*time.Millisecond), &pb.Consult{MerchantId: "m", BuyerId: "b"})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrIndeterminate) {
		t.Errorf("error %v, want ErrUnavailable and not ErrIndeterminate", err)
	}
}

// TestAttemptTimeoutRetried: a hung attempt is abandoned after the call
// timeout and retried with the same id.
func TestAttemptTimeoutRetried(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	c := newTestClient(t, fc, WithCallTimeout(50*time.Millisecond))
	var n atomic.Int32
	fc.setHook(func(ctx context.Context, _ *fakeNode, _ fakeCall) (*pb.Result, error, bool) {
		if n.Add(1) == 1 {
			<-ctx.Done()
			return nil, ctx.Err(), true
		}
		return nil, nil, false
	})
	if _, err := c.FirstReply(testCtx(t, 5*time.Second), "m", "s"); err != nil {
		t.Fatalf("FirstReply: %v", err)
	}
	calls := fc.callsTo(frontdeskv1connect.DispatchServiceFirstReplyProcedure)
	if len(calls) != 2 || calls[0].requestID != calls[1].requestID {
		t.Fatalf("attempts %+v, want 2 with the same request id", calls)
	}
}

// TestTokenSent: the bearer token goes with every request, streams and
// shard map requests included.
func TestTokenSent(t *testing.T) {
	protocols(t, func(t *testing.T, p Protocol) {
		fc := newFakeCluster(t, 1, 2)
		fc.events = []*pb.Event{{Seq: 1, MerchantId: "m"}}
		c := newTestClient(t, fc, WithProtocol(p), WithToken("s3cret"))
		ctx := testCtx(t, 5*time.Second)
		if _, err := c.Consult(ctx, &pb.Consult{MerchantId: "m", BuyerId: "b"}); err != nil {
			t.Fatal(err)
		}
		w := c.Watch(ctx, "m", 0)
		defer w.Close()
		if _, err := w.Next(); err != nil {
			t.Fatal(err)
		}
		calls := fc.allCalls()
		if len(calls) != 3 {
			t.Fatalf("calls %+v, want GetShardMap, Consult and Watch", calls)
		}
		for _, call := range calls {
			if call.auth != "Bearer s3cret" {
				t.Errorf("%s sent Authorization %q, want \"Bearer s3cret\"", call.procedure, call.auth)
			}
		}
	})
}

func TestClosedClient(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	c := newTestClient(t, fc)
	c.Close()
	if _, err := c.Consult(testCtx(t, time.Second), &pb.Consult{MerchantId: "m"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Consult after Close: %v, want ErrClosed", err)
	}
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	var b backoff
	const min, max = 10 * time.Millisecond, 80 * time.Millisecond
	for i, ceil := range []time.Duration{10, 20, 40, 80, 80, 80} {
		ceil *= time.Millisecond
		d := b.next(min, max)
		if d < ceil/2 || d > ceil {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, d, ceil/2, ceil)
		}
	}
	b.reset()
	if d := b.next(min, max); d > min {
		t.Errorf("after reset wait = %v, want at most %v", d, min)
	}
}

// TestConcurrentCallsDuringLeaderChanges: many callers while leadership
// moves around; every call ends at a leader, none fails.
func TestConcurrentCallsDuringLeaderChanges(t *testing.T) {
	fc := newFakeCluster(t, 3, 8)
	c := newTestClient(t, fc)
	stop := make(chan struct{})
	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			fc.setLeader(uint32(i%8), (i/8)%3)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 8*25)
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				m := fmt.Sprintf("shop-%d-%d", w, i)
				if _, err := c.Consult(testCtx(t, 5*time.Second), &pb.Consult{MerchantId: m, BuyerId: "b"}); err != nil {
					errs <- fmt.Errorf("Consult(%s): %w", m, err)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-flipped
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCanceledOnceReceivedIsIndeterminate: a write whose caller gives up
// once the node has its request may have been applied, whether or not the
// transport has reported the request written yet: the error says
// indeterminate (the window TestBatchingContext found on the Batch path).
func TestCanceledOnceReceivedIsIndeterminate(t *testing.T) {
	protocols(t, func(t *testing.T, p Protocol) {
		fc := newFakeCluster(t, 1, 1)
		ctx, cancel := context.WithCancel(testCtx(t, 5*time.Second))
		c := newTestClient(t, fc, WithProtocol(p), WithBatching(0))
		fc.setHook(func(rctx context.Context, _ *fakeNode, _ fakeCall) (*pb.Result, error, bool) {
			cancel() // the node has the whole request; its caller gives up
			<-rctx.Done()
			return nil, rctx.Err(), true
		})
		_, err := c.Consult(ctx, &pb.Consult{MerchantId: "m", BuyerId: "b"})
		if !errors.Is(err, ErrIndeterminate) || !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want ErrIndeterminate and context.Canceled", err)
		}
	})
}
