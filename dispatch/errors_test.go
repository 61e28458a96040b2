package dispatch

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
)

// hintCluster knows one shard's leader; nothing else is used by toConnect.
type hintCluster struct{ Cluster }

func (hintCluster) Leader(uint32) (string, string) { return "n2", "10.0.0.2:7420" }

func TestErrorTable(t *testing.T) {
	s := New(hintCluster{}, nil)
	fe := func(code pb.ErrorCode) error {
		return fmt.Errorf("wrapped: %w", &fsm.Error{Code: code, Field: "agent_id", Message: "m"})
	}
	cases := []struct {
		name          string
		err           error
		code          connect.Code
		field, reason string
		hint          bool
		indeterminate bool
	}{
		{"invalid", fe(pb.ErrorCode_ERROR_CODE_INVALID), connect.CodeInvalidArgument, "agent_id", "invalid", false, false},
		{"not found", fe(pb.ErrorCode_ERROR_CODE_NOT_FOUND), connect.CodeNotFound, "agent_id", "not_found", false, false},
		{"limit", fe(pb.ErrorCode_ERROR_CODE_LIMIT), connect.CodeFailedPrecondition, "agent_id", "limit", false, false},
		{"conflict", fe(pb.ErrorCode_ERROR_CODE_CONFLICT), connect.CodeFailedPrecondition, "agent_id", "conflict", false, false},
		{"unknown command", fe(pb.ErrorCode_ERROR_CODE_UNKNOWN_COMMAND), connect.CodeUnimplemented, "agent_id", "unknown_command", false, false},
		{"forbidden", fe(pb.ErrorCode_ERROR_CODE_FORBIDDEN), connect.CodePermissionDenied, "agent_id", "forbidden", false, false},
		{"compacted", fsm.ErrCompacted, connect.CodeFailedPrecondition, "", "", false, false},
		{"not leader", &shard.NotLeaderError{Shard: 3, LeaderID: "n2"}, connect.CodeUnavailable, "", "", true, false},
		{"no leader", fmt.Errorf("x: %w", shard.ErrNoLeader), connect.CodeUnavailable, "", "", true, false},
		{"shutdown", shard.ErrShutdown, connect.CodeUnavailable, "", "", true, false},
		{"indeterminate", fmt.Errorf("x: %w", shard.ErrIndeterminate), connect.CodeUnavailable, "", "", true, true},
		{"no replica", errNoReplica, connect.CodeUnavailable, "", "", true, false},
		{"canceled", context.Canceled, connect.CodeCanceled, "", "", false, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded, "", "", false, false},
		{"other", errors.New("disk on fire"), connect.CodeInternal, "", "", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.toConnect(3, tc.err)
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != tc.code {
				t.Fatalf("want %v, got %v", tc.code, err)
			}
			var gotField, gotReason string
			var hint *pb.LeaderHint
			for _, d := range ce.Details() {
				v, derr := d.Value()
				if derr != nil {
					t.Fatal(derr)
				}
				switch v := v.(type) {
				case *pb.FieldError:
					gotField, gotReason = v.Field, v.Reason
				case *pb.LeaderHint:
					hint = v
				}
			}
			if gotField != tc.field || gotReason != tc.reason {
				t.Fatalf("field error %q/%q, want %q/%q", gotField, gotReason, tc.field, tc.reason)
			}
			if (hint != nil) != tc.hint {
				t.Fatalf("leader hint present: %v, want %v", hint != nil, tc.hint)
			}
			if hint != nil && (hint.Shard != 3 || hint.LeaderId != "n2" || hint.LeaderApiAddr != "10.0.0.2:7420" || hint.Indeterminate != tc.indeterminate) {
				t.Fatalf("hint %v", hint)
			}
		})
	}
}
