package client

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

const watchProc = frontdeskv1connect.EventServiceWatchProcedure

// shardEvents are seqs 1..n of one shard; every third belongs to another
// merchant, so m's seqs have gaps, as they do on a real shard.
func shardEvents(m string, n uint64) (all []*pb.Event, mine []uint64) {
	for seq := uint64(1); seq <= n; seq++ {
		e := &pb.Event{Seq: seq, MerchantId: m, Kind: pb.EventKind_EVENT_KIND_SESSION_QUEUED}
		if seq%3 == 0 {
			e.MerchantId = "other"
		} else {
			mine = append(mine, seq)
		}
		all = append(all, e)
	}
	return all, mine
}

// TestWatchResumesAfterDroppedStream: the leader's stream dies mid-way (its
// node is killed); the Watcher reconnects to another replica asking for
// the events after the last one it delivered, drops the overlap that
// replica sends again, and delivers every event once, in order.
func TestWatchResumesAfterDroppedStream(t *testing.T) {
	protocols(t, func(t *testing.T, p Protocol) {
		fc := newFakeCluster(t, 3, 4)
		m := merchantOn(t, fc, 2)
		all, want := shardEvents(m, 30)
		fc.events = all
		const killAfter = 10 // the first stream dies after delivering seq 10
		delivered := make(chan struct{})
		var streams atomic.Int32
		fc.watch = func(ctx context.Context, n *fakeNode, c fakeCall, s *connect.ServerStream[pb.WatchResponse]) error {
			first := streams.Add(1) == 1
			after, batch := c.afterSeq, 2
			if !first {
				after, batch = max(after, 4)-4, 3 // resend some delivered events
			}
			events := n.fc.eventsAfter(m, after)
			if first {
				events = slices.DeleteFunc(events, func(e *pb.Event) bool { return e.Seq > killAfter })
			}
			for len(events) > 0 {
				k := min(batch, len(events))
				if err := s.Send(&pb.WatchResponse{Events: events[:k]}); err != nil {
					return err
				}
				events = events[k:]
			}
			if first {
				select {
				case <-delivered:
				case <-ctx.Done():
					return nil
				}
				n.down.Store(true)
				panic(http.ErrAbortHandler) // the node dies mid-stream
			}
			<-ctx.Done()
			return nil
		}
		c := newTestClient(t, fc, WithProtocol(p))
		w := c.Watch(testCtx(t, 10*time.Second), m, 0)
		t.Cleanup(func() { w.Close() })

		var got []uint64
		for len(got) < len(want) {
			events, err := w.Next()
			if err != nil {
				t.Fatalf("Next after %v: %v", got, err)
			}
			for _, e := range events {
				got = append(got, e.GetSeq())
				if e.GetSeq() == killAfter {
					close(delivered)
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("delivered seqs %v, want %v (no gaps, no duplicates)", got, want)
		}
		if w.LastSeq() != want[len(want)-1] {
			t.Errorf("LastSeq = %d, want %d", w.LastSeq(), want[len(want)-1])
		}
		calls := fc.callsTo(watchProc)
		if len(calls) < 2 {
			t.Fatalf("%d Watch calls, want a reconnect", len(calls))
		}
		if calls[0].node != 0 || calls[0].afterSeq != 0 {
			t.Errorf("first stream %+v, want node 0 (leader) after seq 0", calls[0])
		}
		last := calls[len(calls)-1]
		if last.node == 0 || last.afterSeq != killAfter {
			t.Errorf("resumed stream %+v, want another node after seq %d", last, killAfter)
		}
	})
}

func TestWatchCompacted(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	fc.watch = func(context.Context, *fakeNode, fakeCall, *connect.ServerStream[pb.WatchResponse]) error {
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("fsm: events compacted"))
	}
	c := newTestClient(t, fc)
	w := c.Watch(testCtx(t, 5*time.Second), "m", 7)
	defer w.Close()
	for range 2 {
		if _, err := w.Next(); !errors.Is(err, ErrCompacted) {
			t.Fatalf("Next: %v, want ErrCompacted (and again on the next call)", err)
		}
	}
	if n := len(fc.callsTo(watchProc)); n != 1 {
		t.Errorf("%d Watch calls, want 1 (no retry)", n)
	}
}

func TestWatchFailsOnSeqsGoingBack(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	fc.watch = func(ctx context.Context, _ *fakeNode, _ fakeCall, s *connect.ServerStream[pb.WatchResponse]) error {
		_ = s.Send(&pb.WatchResponse{Events: []*pb.Event{{Seq: 5}, {Seq: 6}}})
		_ = s.Send(&pb.WatchResponse{Events: []*pb.Event{{Seq: 6}}})
		<-ctx.Done()
		return nil
	}
	c := newTestClient(t, fc)
	w := c.Watch(testCtx(t, 5*time.Second), "m", 0)
	defer w.Close()
	if events, err := w.Next(); err != nil || len(events) != 2 {
		t.Fatalf("first Next = %v, %v; want seqs 5 and 6", events, err)
	}
	if _, err := w.Next(); !errors.Is(err, ErrEventOrder) {
		t.Fatalf("Next after a repeated seq on the same stream: %v, want ErrEventOrder", err)
	}
}

func TestWatchInvalidNotRetried(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	fc.watch = func(context.Context, *fakeNode, fakeCall, *connect.ServerStream[pb.WatchResponse]) error {
		return fieldError(connect.CodeInvalidArgument, "merchant_id", "invalid")
	}
	c := newTestClient(t, fc)
	w := c.Watch(testCtx(t, 5*time.Second), "", 0)
	defer w.Close()
	var e *Error
	if _, err := w.Next(); !errors.Is(err, ErrInvalid) || !errors.As(err, &e) || e.Field != "merchant_id" {
		t.Fatalf("Next: %v, want ErrInvalid about merchant_id", err)
	}
}

func TestWatchCloseUnblocksNext(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	c := newTestClient(t, fc)
	w := c.Watch(testCtx(t, 5*time.Second), "m", 0)
	time.AfterFunc(50*time.Millisecond, func() { w.Close() })
	if _, err := w.Next(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
}

func TestWatchEndsWithContext(t *testing.T) {
	fc := newFakeCluster(t, 1, 1)
	c := newTestClient(t, fc)
	w := c.Watch(testCtx(t, 100*time.Millisecond), "m", 0)
	defer w.Close()
	if _, err := w.Next(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next: %v, want context.DeadlineExceeded", err)
	}
}

// TestWatchResumesAfterScannedSeq: a node that tells the Watcher how far it
// has scanned the shard's events (scanned_seq, in a message without
// events) moves the resume point past the merchant's last event: the
// stream that replaces an ended one asks for the events after it, so a
// quiet merchant's Watcher does not fall behind the shard's bounded log.
func TestWatchResumesAfterScannedSeq(t *testing.T) {
	fc := newFakeCluster(t, 3, 4)
	m := merchantOn(t, fc, 2)
	var streams atomic.Int32
	fc.watch = func(ctx context.Context, n *fakeNode, c fakeCall, s *connect.ServerStream[pb.WatchResponse]) error {
		if streams.Add(1) == 1 {
			if err := s.Send(&pb.WatchResponse{Events: []*pb.Event{{Seq: 2, MerchantId: m}}}); err != nil {
				return err
			}
			// Then the node ends the stream (as one shutting down does).
			return s.Send(&pb.WatchResponse{ScannedSeq: 50})
		}
		if err := s.Send(&pb.WatchResponse{Events: []*pb.Event{{Seq: 50, MerchantId: m}, {Seq: 51, MerchantId: m}}}); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	c := newTestClient(t, fc)
	w := c.Watch(testCtx(t, 10*time.Second), m, 0)
	t.Cleanup(func() { w.Close() })
	// A subscriber may read ResumeSeq from another goroutine (-race checks).
	stopReading := make(chan struct{})
	readerDone := make(chan uint64)
	go func() {
		var seen uint64
		for {
			seen = max(seen, w.ResumeSeq())
			select {
			case <-stopReading:
				readerDone <- seen
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()

	events, err := w.Next()
	if err != nil || len(events) != 1 || events[0].GetSeq() != 2 {
		t.Fatalf("first Next: %v, %v; want seq 2", events, err)
	}
	events, err = w.Next()
	if err != nil || len(events) != 1 || events[0].GetSeq() != 51 {
		t.Fatalf("second Next: %v, %v; want seq 51 only (50 was scanned past on the first stream)", events, err)
	}
	if w.LastSeq() != 51 || w.ResumeSeq() != 51 {
		t.Errorf("LastSeq %d, ResumeSeq %d; want 51 and 51", w.LastSeq(), w.ResumeSeq())
	}
	close(stopReading)
	if seen := <-readerDone; seen > 51 {
		t.Errorf("another goroutine read ResumeSeq %d, past any seq sent", seen)
	}
	calls := fc.callsTo(watchProc)
	if len(calls) != 2 {
		t.Fatalf("%d Watch calls, want 2 (one reconnect)", len(calls))
	}
	if calls[1].afterSeq != 50 {
		t.Errorf("resumed stream after seq %d, want 50 (the scanned seq, not the last event's 2)", calls[1].afterSeq)
	}
}
