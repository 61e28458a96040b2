package dispatch

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
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
