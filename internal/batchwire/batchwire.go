// Package batchwire is how one call's Connect error travels inside a
// BatchResult of DispatchService.Batch: [Result] on the server (dispatch),
// [Error] on the client. A call answered inside a batch must fail exactly as
// it would alone — same code, message, details and metadata — so the two
// directions live here, side by side, and are tested as a round trip.
package batchwire

import (
	"errors"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/anypb"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// typePrefix is the type URL prefix of an error detail in google.protobuf.Any.
const typePrefix = "type.googleapis.com/"

// Result carries err in a BatchResult as a unary call would have sent it:
// its code, message, details and metadata (the first value of each key). An
// error that is not a *connect.Error travels as CodeInternal with its text.
func Result(err error) *pb.BatchResult {
	ce := new(connect.Error)
	if !errors.As(err, &ce) {
		ce = connect.NewError(connect.CodeInternal, err)
	}
	be := &pb.BatchError{Code: uint32(ce.Code()), Message: ce.Message()}
	for _, d := range ce.Details() {
		be.Details = append(be.Details, &anypb.Any{TypeUrl: typePrefix + d.Type(), Value: d.Bytes()})
	}
	for k, v := range ce.Meta() {
		if len(v) > 0 {
			if be.Meta == nil {
				be.Meta = map[string]string{}
			}
			be.Meta[k] = v[0]
		}
	}
	return &pb.BatchResult{Result: &pb.BatchResult_Error{Error: be}}
}

// Error rebuilds the Connect error of a BatchError as received from the
// server: a wire error (connect.IsWireError) with its code, message,
// details and metadata. A detail that cannot be read is left out.
func Error(be *pb.BatchError) *connect.Error {
	ce := connect.NewWireError(connect.Code(be.GetCode()), errors.New(be.GetMessage()))
	for _, d := range be.GetDetails() {
		if det, err := connect.NewErrorDetail(d); err == nil {
			ce.AddDetail(det)
		}
	}
	for k, v := range be.GetMeta() {
		ce.Meta().Set(k, v)
	}
	return ce
}
