package fsm

import (
	"errors"
	"fmt"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Sentinel errors. A command that fails returns an *Error whose Is method
// matches exactly one of these, so callers in any layer use errors.Is.
var (
	// ErrInvalid: a field of the command is malformed (empty or too long id,
	// unknown enum value, out-of-range number). Error.Field names it.
	ErrInvalid = errors.New("fsm: invalid command")
	// ErrNotFound: the merchant, group, agent or session does not exist.
	ErrNotFound = errors.New("fsm: not found")
	// ErrLimit: the agent cannot take the buyer (at its reception limit or not online).
	ErrLimit = errors.New("fsm: agent at limit or unavailable")
	// ErrConflict: the current state does not allow the command (for example
	// ending a session that has ended, or deleting a group still in use).
	ErrConflict = errors.New("fsm: conflict with current state")
	// ErrUnknownCommand: the command body is not known to this version.
	ErrUnknownCommand = errors.New("fsm: unknown command")
	// ErrForbidden: the acting agent (actor_agent_id) is not the session's agent.
	ErrForbidden = errors.New("fsm: not the acting agent's session")
)

// Error is a failed command: which sentinel, which field and why. A command
// that returns an Error changed nothing.
type Error struct {
	Code    pb.ErrorCode
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", sentinel(e.Code).Error(), e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", sentinel(e.Code).Error(), e.Message)
}

// Is matches the sentinel for the error's code.
func (e *Error) Is(target error) bool { return target == sentinel(e.Code) }

func sentinel(c pb.ErrorCode) error {
	switch c {
	case pb.ErrorCode_ERROR_CODE_INVALID:
		return ErrInvalid
	case pb.ErrorCode_ERROR_CODE_NOT_FOUND:
		return ErrNotFound
	case pb.ErrorCode_ERROR_CODE_LIMIT:
		return ErrLimit
	case pb.ErrorCode_ERROR_CODE_CONFLICT:
		return ErrConflict
	case pb.ErrorCode_ERROR_CODE_FORBIDDEN:
		return ErrForbidden
	default:
		return ErrUnknownCommand
	}
}

// ResultError returns the error carried by a result, or nil if it succeeded.
func ResultError(r *pb.Result) error {
	if r == nil || r.Error == pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return nil
	}
	return &Error{Code: r.Error, Field: r.ErrorField, Message: r.ErrorMessage}
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Code: pb.ErrorCode_ERROR_CODE_INVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

func notFound(field, id string) *Error {
	return &Error{Code: pb.ErrorCode_ERROR_CODE_NOT_FOUND, Field: field, Message: fmt.Sprintf("%q does not exist", id)}
}

func conflict(field, format string, args ...any) *Error {
	return &Error{Code: pb.ErrorCode_ERROR_CODE_CONFLICT, Field: field, Message: fmt.Sprintf(format, args...)}
}

func limitErr(field, format string, args ...any) *Error {
	return &Error{Code: pb.ErrorCode_ERROR_CODE_LIMIT, Field: field, Message: fmt.Sprintf(format, args...)}
}

// checkActor enforces actor_agent_id: when set, the session must be that agent's.
func checkActor(actor string, s *session) *Error {
	if actor != "" && s.AgentId != actor {
		return &Error{Code: pb.ErrorCode_ERROR_CODE_FORBIDDEN, Field: "session_id",
			Message: fmt.Sprintf("session %q is not agent %q's", s.SessionId, actor)}
	}
	return nil
}

func errResult(e *Error) *pb.Result {
	return &pb.Result{Error: e.Code, ErrorField: e.Field, ErrorMessage: e.Message}
}
