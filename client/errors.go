package client

import (
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Sentinel errors, for errors.Is. API errors are *Error values that match
// the sentinel of their kind.
var (
	// ErrBusy: the call succeeded but nobody can take the buyer (no agent
	// has room and the queue is full or off). It is returned together with
	// the result, whose Outcome is OUTCOME_BUSY.
	ErrBusy = errors.New("client: busy")
	// ErrNotFound: the merchant, group, agent or session does not exist
	// (NOT_FOUND; *Error.Field names the field).
	ErrNotFound = errors.New("client: not found")
	// ErrInvalid: the request is malformed (INVALID_ARGUMENT; *Error.Field
	// names the field). Retrying it cannot help.
	ErrInvalid = errors.New("client: invalid request")
	// ErrLimit: an agent is at its reception limit or not available
	// (FAILED_PRECONDITION with reason "limit").
	ErrLimit = errors.New("client: limit reached")
	// ErrConflict: the state does not allow the command, e.g. escalating a
	// session that is not in BOT (FAILED_PRECONDITION with reason
	// "conflict").
	ErrConflict = errors.New("client: conflict")
	// ErrUnavailable: the cluster could not serve the call before its
	// context ended (no leader, nodes down or unreachable). Returned inside
	// a *RetryError whose Last error is the final UNAVAILABLE.
	ErrUnavailable = errors.New("client: unavailable")
	// ErrIndeterminate: the context ended after an attempt whose outcome is
	// unknown: a write may or may not have been applied. Repeat it with the
	// same request id (*RetryError.RequestID, WithRequestID) to find out;
	// the cluster applies a request id at most once.
	ErrIndeterminate = errors.New("client: outcome unknown")
	// ErrCompacted: a Watcher asked for events the shard no longer keeps
	// (FAILED_PRECONDITION from EventService.Watch). Read the current state
	// and watch again from a newer seq.
	ErrCompacted = errors.New("client: events compacted")
	// ErrEventOrder: a Watcher received events whose seqs do not increase;
	// the stream cannot be trusted and the Watcher stops.
	ErrEventOrder = errors.New("client: events out of order")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client: closed")
)

// Error is an error the cluster answered with, decoded from its Connect
// code and frontdesk.v1 details. It matches ErrInvalid, ErrNotFound,
// ErrLimit, ErrConflict or ErrUnavailable with errors.Is (see Is) and
// unwraps to the *connect.Error, so connect.CodeOf works too.
type Error struct {
	// Procedure is the RPC, e.g. "/frontdesk.v1.DispatchService/Consult".
	Procedure string
	Code      connect.Code
	// Field names the request field the error is about, Reason is
	// invalid, not_found, limit or conflict (from a FieldError detail; empty
	// when the server sent none).
	Field, Reason string
	Message       string
	// Hint is the LeaderHint of an UNAVAILABLE error, if any.
	Hint *pb.LeaderHint

	err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client: %s: %s", e.Code, e.Message)
	if e.Field != "" {
		fmt.Fprintf(&b, " (field %s", e.Field)
		if e.Reason != "" {
			fmt.Fprintf(&b, ", %s", e.Reason)
		}
		b.WriteString(")")
	}
	if e.Procedure != "" {
		fmt.Fprintf(&b, " [%s]", e.Procedure)
	}
	return b.String()
}

// Unwrap returns the underlying *connect.Error.
func (e *Error) Unwrap() error { return e.err }

// Is maps the error to a sentinel: reason invalid or INVALID_ARGUMENT →
// ErrInvalid; not_found or NOT_FOUND → ErrNotFound; limit → ErrLimit;
// conflict → ErrConflict; UNAVAILABLE → ErrUnavailable.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrInvalid:
		return e.Reason == "invalid" || e.Reason == "" && e.Code == connect.CodeInvalidArgument
	case ErrNotFound:
		return e.Reason == "not_found" || e.Reason == "" && e.Code == connect.CodeNotFound
	case ErrLimit:
		return e.Reason == "limit"
	case ErrConflict:
		return e.Reason == "conflict"
	case ErrUnavailable:
		return e.Code == connect.CodeUnavailable
	}
	return false
}

// newError decodes a Connect error and its frontdesk.v1 details.
func newError(procedure string, err error) *Error {
	ce := new(connect.Error)
	if !errors.As(err, &ce) {
		ce = connect.NewError(connect.CodeUnknown, err)
	}
	e := &Error{Procedure: procedure, Code: ce.Code(), Message: ce.Message(), err: ce}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		switch v := v.(type) {
		case *pb.FieldError:
			e.Field, e.Reason = v.Field, v.Reason
		case *pb.LeaderHint:
			e.Hint = v
		}
	}
	return e
}

// resultError turns an error carried inside a Result into an *Error (the
// server normally sends those as Connect errors instead).
func resultError(procedure string, r *pb.Result) error {
	code, reason := connect.CodeInternal, "internal"
	switch r.GetError() {
	case pb.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return nil
	case pb.ErrorCode_ERROR_CODE_INVALID:
		code, reason = connect.CodeInvalidArgument, "invalid"
	case pb.ErrorCode_ERROR_CODE_NOT_FOUND:
		code, reason = connect.CodeNotFound, "not_found"
	case pb.ErrorCode_ERROR_CODE_LIMIT:
		code, reason = connect.CodeFailedPrecondition, "limit"
	case pb.ErrorCode_ERROR_CODE_CONFLICT:
		code, reason = connect.CodeFailedPrecondition, "conflict"
	case pb.ErrorCode_ERROR_CODE_UNKNOWN_COMMAND:
		code, reason = connect.CodeUnimplemented, "unknown_command"
	}
	return &Error{
		Procedure: procedure, Code: code, Field: r.GetErrorField(), Reason: reason,
		Message: r.GetErrorMessage(), err: connect.NewError(code, errors.New(r.GetErrorMessage())),
	}
}

// RetryError is returned when the call's context ended before any attempt
// succeeded. It matches the context's error (context.DeadlineExceeded or
// context.Canceled), the last attempt's error (so ErrUnavailable when that
// was UNAVAILABLE) and, when Indeterminate, ErrIndeterminate.
type RetryError struct {
	Procedure string
	// RequestID is the id every attempt carried ("" for reads).
	RequestID string
	Attempts  int
	// Indeterminate: some attempt of this write may have been applied.
	Indeterminate bool
	// Last is the last attempt's error; Ctx is the context's error.
	Last, Ctx error
}

func (e *RetryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client: %s: gave up after %d attempts: %v", e.Procedure, e.Attempts, e.Ctx)
	if e.Indeterminate {
		fmt.Fprintf(&b, "; outcome unknown, retry with request id %q", e.RequestID)
	}
	if e.Last != nil {
		fmt.Fprintf(&b, "; last error: %v", e.Last)
	}
	return b.String()
}

// Unwrap returns the context's error, the last attempt's error and, when
// the outcome is unknown, ErrIndeterminate.
func (e *RetryError) Unwrap() []error {
	errs := []error{e.Ctx}
	if e.Last != nil {
		errs = append(errs, e.Last)
	}
	if e.Indeterminate {
		errs = append(errs, ErrIndeterminate)
	}
	return errs
}

// failure says what an attempt's error means for the call.
type failure struct {
	retry bool
	// unknown: the attempt reached (or may have reached) a node, which may
	// have applied it.
	unknown bool
	// hint: the leader's API address named by the node, if any.
	hint      string
	hintShard uint32
}

// classify decides whether an attempt's error is worth retrying. The
// call's context is still alive when it is called, so a client-side
// timeout or cancellation is the attempt's own timeout. sent tells whether
// the request's headers went out on a connection.
func classify(err error, sent bool) failure {
	ce := new(connect.Error)
	if !errors.As(err, &ce) {
		return failure{retry: true, unknown: sent}
	}
	if connect.IsWireError(err) {
		switch ce.Code() {
		case connect.CodeUnavailable:
			f := failure{retry: true}
			for _, d := range ce.Details() {
				if v, derr := d.Value(); derr == nil {
					if h, ok := v.(*pb.LeaderHint); ok {
						f.unknown = h.Indeterminate
						f.hint, f.hintShard = h.LeaderApiAddr, h.Shard
					}
				}
			}
			return f
		case connect.CodeDeadlineExceeded:
			// The node gave up waiting (our attempt timeout travels with
			// the request): the write may still be applied.
			return failure{retry: true, unknown: true}
		}
		return failure{}
	}
	// Synthesized by the client: a transport failure (connection refused,
	// reset or lost, a stream reset, the attempt's timeout), or a local
	// error that no retry can fix.
	switch ce.Code() {
	case connect.CodeResourceExhausted, connect.CodeInvalidArgument, connect.CodeUnimplemented,
		connect.CodeUnauthenticated, connect.CodePermissionDenied:
		// Size limits, an unparsable response, or an HTTP 401/403/404
		// from something that is not a frontdesk node.
		return failure{}
	case connect.CodeInternal:
		if strings.Contains(ce.Message(), "marshal") {
			return failure{} // the request cannot be encoded
		}
	}
	return failure{retry: true, unknown: sent}
}
