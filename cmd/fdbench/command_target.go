package main

import (
	"context"
	"fmt"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// commandTarget is W1's setup, consult and end for the in-process targets
// (ceiling, inproc), which build the commands themselves and apply them
// with apply: all the commands given to one call in one entry, one result
// per command, in order; an error means the entry's fate, never a command's.
type commandTarget struct {
	apply func(ctx context.Context, merchant string, cmds ...*pb.Command) ([]*pb.Result, error)
}

// setup applies one merchant's setup commands as one entry (setup is not
// measured) and fails on the first command the state machine refused.
func (t commandTarget) setup(ctx context.Context, cmds []*pb.Command) error {
	res, err := t.apply(ctx, merchantOf(cmds[0]), cmds...)
	if err != nil {
		return err
	}
	for i, r := range res {
		if err := fsm.ResultError(r); err != nil {
			return fmt.Errorf("command %d: %w", i, err)
		}
	}
	return nil
}

func (t commandTarget) consult(ctx context.Context, merchant, buyer string) (*pb.Result, error) {
	cmd := &pb.Command{RequestId: buyer, Body: &pb.Command_Consult{Consult: &pb.Consult{MerchantId: merchant, BuyerId: buyer}}}
	res, err := t.apply(ctx, merchant, cmd)
	if err != nil {
		return nil, err
	}
	return res[0], fsm.ResultError(res[0])
}

func (t commandTarget) end(ctx context.Context, merchant, session string) error {
	cmd := &pb.Command{RequestId: "end/" + session, Body: &pb.Command_End{End: &pb.End{
		MerchantId: merchant, SessionId: session, Reason: pb.EndReason_END_REASON_AGENT_ENDED}}}
	res, err := t.apply(ctx, merchant, cmd)
	if err != nil {
		return err
	}
	return fsm.ResultError(res[0])
}
