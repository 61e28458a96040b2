// Package validate checks a chaos run: invariants of the final state read
// from every shard, every acknowledged result reflected in it, the history
// linearizable (porcupine, per merchant), every replica of a shard
// identical at the same index, and how long each fault kept its shard from
// taking writes.
package validate

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/e2e/model"
	"github.com/frontdeskhq/frontdesk/e2e/traffic"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Final is the state of every merchant after the traffic stopped, read
// through the API with linearizable reads.
type Final struct {
	Merchants map[string]*Merchant `json:"merchants"`
}

// Merchant is one merchant's final state.
type Merchant struct {
	Shard  uint32          `json:"shard"`
	Agents []*pb.AgentView `json:"agents"`
	// Queues: each group's waiting sessions in order (GetQueue, all of
	// them) and length.
	Queues map[string]*pb.GetQueueResponse `json:"queues"`
	// Buyers: each buyer's active session (GetPosition); buyers without one
	// are absent.
	Buyers map[string]*pb.Result `json:"buyers"`
	// Sessions: every session named in the history or found above, as
	// GetSession reads it; absent when the shard does not know it (never
	// existed, or ended so long ago that it was dropped).
	Sessions map[string]*pb.Session `json:"sessions"`
	Stats    *pb.GetStatsResponse   `json:"stats"`
}

// finalClient is the client id of the final reads in the history.
const finalClient = 1 << 20

// ReadFinal reads the final state of the merchants ms: their agents,
// queues, stats, every buyer's active session (the buyers named in the
// history) and every session named in it. The reads of buyers and agents
// are added to h, so that the linearizability check covers the final
// state too: an acknowledged write it does not reflect makes the history
// non-linearizable.
func ReadFinal(ctx context.Context, cl *client.Client, h *model.History, ms []*model.Merchant) (*Final, error) {
	ops := h.Ops()
	buyers, sessions := map[string][]string{}, map[string][]string{}
	for _, op := range ops {
		m := op.Input.Merchant
		for _, b := range []string{op.Input.Buyer, op.Output.Buyer} {
			if b != "" && !slices.Contains(buyers[m], b) {
				buyers[m] = append(buyers[m], b)
			}
		}
		for _, s := range []string{op.Input.Session, op.Output.Session} {
			if s != "" && !slices.Contains(sessions[m], s) {
				sessions[m] = append(sessions[m], s)
			}
		}
	}
	f := &Final{Merchants: map[string]*Merchant{}}
	for _, m := range ms {
		fm, err := readMerchant(ctx, cl, h, m, buyers[m.ID], sessions[m.ID])
		if err != nil {
			return nil, fmt.Errorf("validate: final read of %s: %w", m.ID, err)
		}
		f.Merchants[m.ID] = fm
	}
	return f, nil
}

func readMerchant(ctx context.Context, cl *client.Client, h *model.History, m *model.Merchant, buyers, sessions []string) (*Merchant, error) {
	fm := &Merchant{Shard: cl.ShardOf(m.ID), Queues: map[string]*pb.GetQueueResponse{},
		Buyers: map[string]*pb.Result{}, Sessions: map[string]*pb.Session{}}
	record := func(in model.Input, out model.Output, call int64) {
		in.Merchant = m.ID
		h.Add(model.Op{Client: finalClient, Shard: fm.Shard, Input: in, Output: out, Call: call, Return: h.Now()})
	}
	call := h.Now()
	agents, err := cl.ListAgents(ctx, m.ID)
	if err != nil {
		return nil, err
	}
	fm.Agents = agents
	record(model.Input{Kind: model.ListAgents}, traffic.AgentsOutput(agents), call)

	for _, g := range m.Groups {
		q, err := cl.GetQueue(ctx, m.ID, g.ID, 1000)
		if err != nil {
			return nil, err
		}
		fm.Queues[g.ID] = q
	}
	slices.Sort(buyers)
	for _, b := range buyers {
		call := h.Now()
		r, err := cl.GetPosition(ctx, m.ID, b)
		switch {
		case err == nil:
			fm.Buyers[b] = r
			record(model.Input{Kind: model.GetPosition, Buyer: b}, traffic.ResultOutput(r), call)
			if !slices.Contains(sessions, r.GetSessionId()) {
				sessions = append(sessions, r.GetSessionId())
			}
		case isNotFound(err):
			record(model.Input{Kind: model.GetPosition, Buyer: b}, model.Output{Err: "not_found"}, call)
		default:
			return nil, err
		}
	}
	for _, sid := range sessions {
		if sid == "" || sid[0] == '?' {
			continue
		}
		s, err := cl.GetSession(ctx, m.ID, sid)
		switch {
		case err == nil:
			fm.Sessions[sid] = s
		case isNotFound(err):
		default:
			return nil, err
		}
	}
	if fm.Stats, err = cl.GetStats(ctx, m.ID); err != nil {
		return nil, err
	}
	return fm, nil
}

// isNotFound: the cluster answered NOT_FOUND (not: gave up asking).
func isNotFound(err error) bool {
	var re *client.RetryError
	return errors.Is(err, client.ErrNotFound) && !errors.As(err, &re)
}
