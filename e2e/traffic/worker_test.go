package traffic

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/e2e/model"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// TestDefinite: only the cluster's own answers count as outcomes; a call
// that gave up, or a node that failed, says nothing about a write.
func TestDefinite(t *testing.T) {
	cases := []struct {
		err  error
		want bool
		out  string
	}{
		{nil, true, ""},
		{client.ErrBusy, true, ""},
		{&client.Error{Code: connect.CodeNotFound, Reason: "not_found"}, true, "not_found"},
		{&client.Error{Code: connect.CodeFailedPrecondition, Reason: "limit"}, true, "limit"},
		{&client.Error{Code: connect.CodeFailedPrecondition, Reason: "conflict"}, true, "conflict"},
		{fmt.Errorf("wrapped: %w", &client.Error{Code: connect.CodeInvalidArgument}), true, "invalid"},
		{&client.Error{Code: connect.CodeUnavailable}, false, ""},
		{&client.Error{Code: connect.CodeInternal}, false, ""},
		{&client.Error{Code: connect.CodeResourceExhausted}, false, ""},
		{&client.Error{Code: connect.CodeCanceled}, false, ""},
		{&client.RetryError{Ctx: context.DeadlineExceeded, Last: &client.Error{Code: connect.CodeNotFound}}, false, ""},
		{&client.RetryError{Ctx: context.Canceled, Indeterminate: true}, false, ""},
		{client.ErrClosed, false, ""},
		{errors.New("something else"), false, ""},
	}
	for _, c := range cases {
		if got := definite(c.err); got != c.want {
			t.Errorf("definite(%v) = %v, want %v", c.err, got, c.want)
		}
		if c.err == nil || errors.Is(c.err, client.ErrBusy) {
			continue
		}
		out := errOutput(c.err)
		if out.Unknown == c.want || out.Err != c.out {
			t.Errorf("errOutput(%v) = %+v, want unknown=%v err=%q", c.err, out, !c.want, c.out)
		}
	}
}

func TestResultOutput(t *testing.T) {
	r := &pb.Result{Outcome: pb.Outcome_OUTCOME_QUEUED, SessionId: "4-9-0", State: pb.SessionState_SESSION_STATE_QUEUED,
		GroupId: "pre", BuyerId: "b1", Position: 3}
	want := model.Output{Outcome: "QUEUED", Session: "4-9-0", State: "QUEUED", Group: "pre", Buyer: "b1", Position: 3}
	if got := ResultOutput(r); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ResultOutput = %+v, want %+v", got, want)
	}
	if got := ResultOutput(&pb.Result{Outcome: pb.Outcome_OUTCOME_BUSY}); got.Outcome != "BUSY" || got.State != "" {
		t.Errorf("a BUSY result: %+v, want outcome BUSY and no state", got)
	}
}

// TestMerchantsFitTheModel: what the traffic sets up is what the model
// can follow.
func TestMerchantsFitTheModel(t *testing.T) {
	ms := Merchants(Config{})
	if len(ms) != 7 || ms[len(ms)-1].ID != Hot {
		t.Fatalf("%d merchants, last %q; want six shops and the hot one", len(ms), ms[len(ms)-1].ID)
	}
	for _, m := range ms {
		if err := m.Validate(); err != nil {
			t.Error(err)
		}
	}
}
