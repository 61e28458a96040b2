package batchwire

import (
	"errors"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

func TestRoundTrip(t *testing.T) {
	in := connect.NewError(connect.CodeFailedPrecondition, errors.New("not leader"))
	hint := &pb.Event{Seq: 7, MerchantId: "m1"} // any message will do as a detail
	det, err := connect.NewErrorDetail(hint)
	if err != nil {
		t.Fatal(err)
	}
	in.AddDetail(det)
	in.Meta().Set("X-Leader", "node2")
	in.Meta().Add("X-Leader", "node3") // only the first value travels

	r := Result(in)
	// Through the wire format, as a Batch response carries it.
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got pb.BatchResult
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	out := Error(got.GetError())

	if out.Code() != connect.CodeFailedPrecondition || out.Message() != "not leader" || !connect.IsWireError(out) {
		t.Fatalf("got code %v, message %q, wire %v; want failed_precondition, %q, a wire error",
			out.Code(), out.Message(), connect.IsWireError(out), "not leader")
	}
	if v := out.Meta().Values("X-Leader"); len(v) != 1 || v[0] != "node2" {
		t.Fatalf("metadata X-Leader = %q; want [node2]", v)
	}
	if len(out.Details()) != 1 {
		t.Fatalf("%d details; want 1", len(out.Details()))
	}
	v, err := out.Details()[0].Value()
	if err != nil || !proto.Equal(v, hint) {
		t.Fatalf("detail = %v, %v; want %v", v, err, hint)
	}
}

func TestPlainErrorIsInternal(t *testing.T) {
	out := Error(Result(errors.New("disk on fire")).GetError())
	if out.Code() != connect.CodeInternal || out.Message() != "disk on fire" {
		t.Fatalf("got %v %q; want internal, the error's text", out.Code(), out.Message())
	}
}
