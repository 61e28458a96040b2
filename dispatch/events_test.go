package dispatch

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
	"github.com/frontdeskhq/frontdesk/shard"
)

// TestCloseStreams: CloseStreams ends an open event stream and refuses new
// ones, each with UNAVAILABLE (a client resumes on another node); unary
// calls go on being served.
func TestCloseStreams(t *testing.T) {
	n := newFakeNode(4)
	_, r := n.replicaFor("m1", false)
	setupMerchant(t, r, "m1", 1)
	s := New(n, quiet())
	srv := startServer(t, s)
	events := frontdeskv1connect.NewEventServiceClient(srv.Client(), srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	stream, err := events.Watch(ctx, connect.NewRequest(&pb.WatchRequest{MerchantId: "m1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() { // the setup's events: the stream is open
		t.Fatalf("no events: %v", stream.Err())
	}
	s.CloseStreams()
	for stream.Receive() {
	}
	if code := connect.CodeOf(stream.Err()); code != connect.CodeUnavailable {
		t.Fatalf("open stream ended with %v (%v), want UNAVAILABLE", code, stream.Err())
	}

	again, err := events.Watch(ctx, connect.NewRequest(&pb.WatchRequest{MerchantId: "m1"}))
	if err == nil {
		for again.Receive() {
			t.Fatalf("a stream opened after CloseStreams sent %d events", len(again.Msg().GetEvents()))
		}
		err = again.Err()
		again.Close()
	}
	if code := connect.CodeOf(err); code != connect.CodeUnavailable {
		t.Fatalf("new stream after CloseStreams: %v (%v), want UNAVAILABLE", code, err)
	}
	s.CloseStreams() // a second call is harmless

	dispatch := frontdeskv1connect.NewDispatchServiceClient(srv.Client(), srv.URL)
	if _, err := dispatch.Consult(ctx, connect.NewRequest(&pb.ConsultRequest{RequestId: "c1",
		Consult: &pb.Consult{MerchantId: "m1", BuyerId: "b1"}})); err != nil {
		t.Fatalf("consult after CloseStreams: %v", err)
	}
}

// TestWatchReportsScannedSeq: a stream for a quiet merchant on a busy
// shard tells its caller how far it has scanned (scanned_seq, in a message
// without events) every quarter of the event log; resuming after the
// merchant's last event then fails as compacted, resuming after the
// scanned seq does not, and the merchant's next event arrives.
func TestWatchReportsScannedSeq(t *testing.T) {
	const maxEvents = 40
	n := newFakeNode(4)
	id := shard.ForMerchant("quiet", n.shards)
	busy := ""
	for i := 0; busy == ""; i++ {
		if m := fmt.Sprintf("busy%d", i); shard.ForMerchant(m, n.shards) == id {
			busy = m
		}
	}
	r := &fakeReplica{shard: id, fsm: fsm.New(fsm.Config{Shard: id, MaxEvents: maxEvents}), leader: true}
	n.lead[id] = r
	setupMerchant(t, r, busy, 1)
	setupMerchant(t, r, "quiet", 1)
	srv := startServer(t, New(n, quiet()))
	events := frontdeskv1connect.NewEventServiceClient(srv.Client(), srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The stream is open once it has sent the quiet merchant's setup events.
	stream, err := events.Watch(ctx, connect.NewRequest(&pb.WatchRequest{MerchantId: "quiet", AfterSeq: r.fsm.LastEventSeq() - 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() || len(stream.Msg().GetEvents()) != 1 {
		t.Fatalf("no setup event: %v", stream.Err())
	}
	quietLast := stream.Msg().GetEvents()[0].GetSeq()
	// The busy merchant's agent goes away and back, two events each time, a
	// quarter of the log at a time (the stream must keep up, or it is
	// compacted too); each quarter brings a progress message, until the
	// quiet merchant's last event has left the log twice over.
	var scanned uint64
	progress := 0
	for i := 0; r.fsm.LastEventSeq() < quietLast+2*maxEvents; {
		for range maxEvents / 8 {
			i++
			for _, st := range []pb.AgentStatus{pb.AgentStatus_AGENT_STATUS_AWAY, pb.AgentStatus_AGENT_STATUS_ONLINE} {
				if _, err := r.Propose(ctx, &pb.Command{RequestId: fmt.Sprintf("toggle/%d/%v", i, st), Body: &pb.Command_SetAgentStatus{
					SetAgentStatus: &pb.SetAgentStatus{MerchantId: busy, AgentId: "a0", Status: st}}}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !stream.Receive() {
			t.Fatalf("stream ended after %d progress messages (scanned %d, head %d): %v", progress, scanned, r.fsm.LastEventSeq(), stream.Err())
		}
		msg := stream.Msg()
		if len(msg.GetEvents()) > 0 {
			t.Fatalf("the quiet merchant's stream sent %d events of the busy one", len(msg.GetEvents()))
		}
		if msg.GetScannedSeq() < scanned+maxEvents/4 || msg.GetScannedSeq() > r.fsm.LastEventSeq() {
			t.Fatalf("scanned_seq %d after %d, head %d: want a quarter of the log further, within it", msg.GetScannedSeq(), scanned, r.fsm.LastEventSeq())
		}
		scanned = msg.GetScannedSeq()
		progress++
	}

	stale, err := events.Watch(ctx, connect.NewRequest(&pb.WatchRequest{MerchantId: "quiet", AfterSeq: quietLast}))
	if err == nil {
		stale.Receive()
		err = stale.Err()
		stale.Close()
	}
	if code := connect.CodeOf(err); code != connect.CodeFailedPrecondition {
		t.Fatalf("resuming after the merchant's last event: %v (%v), want FAILED_PRECONDITION (compacted)", code, err)
	}
	if _, err := r.Propose(ctx, &pb.Command{RequestId: "quiet/away", Body: &pb.Command_SetAgentStatus{
		SetAgentStatus: &pb.SetAgentStatus{MerchantId: "quiet", AgentId: "a0", Status: pb.AgentStatus_AGENT_STATUS_AWAY}}}); err != nil {
		t.Fatal(err)
	}
	resumed, err := events.Watch(ctx, connect.NewRequest(&pb.WatchRequest{MerchantId: "quiet", AfterSeq: scanned}))
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	for resumed.Receive() {
		if evs := resumed.Msg().GetEvents(); len(evs) > 0 {
			if evs[0].GetMerchantId() != "quiet" || evs[0].GetSeq() <= scanned {
				t.Fatalf("resumed stream sent %v", evs[0])
			}
			return
		}
	}
	t.Fatalf("resumed stream ended without the quiet merchant's event: %v", resumed.Err())
}
