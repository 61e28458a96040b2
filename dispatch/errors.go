package dispatch

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
)

// errNoReplica: this node holds no replica of the merchant's shard.
var errNoReplica = errors.New("dispatch: no replica of the shard on this node")

// errNotFormed: this node does not know the cluster's shard count yet.
var errNotFormed = errors.New("dispatch: this node has not joined a formed cluster yet")

// toConnect is the one table that turns errors from fsm and shard into
// Connect errors. Validation → InvalidArgument; unknown merchant, agent,
// session → NotFound; limit and state conflicts → FailedPrecondition; an
// agent acting on another agent's session → PermissionDenied; not
// leader, no leader, indeterminate, shutting down → Unavailable with a
// LeaderHint; context → Canceled/DeadlineExceeded; anything else →
// Internal, logged.
func (s *Service) toConnect(shardID uint32, err error) error {
	var fe *fsm.Error
	switch {
	case errors.As(err, &fe):
		return fsmError(fe)
	case errors.Is(err, fsm.ErrCompacted):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	case errors.Is(err, shard.ErrIndeterminate):
		return s.unavailable(shardID, err, true)
	case errors.Is(err, shard.ErrNotLeader), errors.Is(err, shard.ErrNoLeader),
		errors.Is(err, shard.ErrShutdown), errors.Is(err, errNoReplica):
		return s.unavailable(shardID, err, false)
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	s.log.Error("internal error", slog.Uint64("shard", uint64(shardID)), slog.Any("err", err))
	return connect.NewError(connect.CodeInternal, err)
}

// unavailable answers UNAVAILABLE with where the shard's leader is.
func (s *Service) unavailable(shardID uint32, err error, indeterminate bool) error {
	ce := connect.NewError(connect.CodeUnavailable, err)
	hint := &pb.LeaderHint{Shard: shardID, Indeterminate: indeterminate}
	hint.LeaderId, hint.LeaderApiAddr = s.cluster.Leader(shardID)
	if d, derr := connect.NewErrorDetail(hint); derr == nil {
		ce.AddDetail(d)
	}
	return ce
}

// fsmError maps a state machine error to its code, with the field named
// in the message and in a FieldError detail.
func fsmError(fe *fsm.Error) *connect.Error {
	code, reason := connect.CodeInternal, "internal"
	switch {
	case errors.Is(fe, fsm.ErrInvalid):
		code, reason = connect.CodeInvalidArgument, "invalid"
	case errors.Is(fe, fsm.ErrNotFound):
		code, reason = connect.CodeNotFound, "not_found"
	case errors.Is(fe, fsm.ErrLimit):
		code, reason = connect.CodeFailedPrecondition, "limit"
	case errors.Is(fe, fsm.ErrConflict):
		code, reason = connect.CodeFailedPrecondition, "conflict"
	case errors.Is(fe, fsm.ErrUnknownCommand):
		code, reason = connect.CodeUnimplemented, "unknown_command"
	case errors.Is(fe, fsm.ErrForbidden):
		code, reason = connect.CodePermissionDenied, "forbidden"
	}
	ce := connect.NewError(code, fe)
	if d, err := connect.NewErrorDetail(&pb.FieldError{Field: fe.Field, Reason: reason}); err == nil {
		ce.AddDetail(d)
	}
	return ce
}

// invalidArg is a request-level validation error naming the field.
func invalidArg(field, msg string) error {
	return fsmError(&fsm.Error{Code: pb.ErrorCode_ERROR_CODE_INVALID, Field: field, Message: msg})
}
