package traffic

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/e2e/model"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// knowledge is what the workers of one merchant have learnt from answers:
// each buyer's last known session. It may be stale; the calls it leads to
// then fail, which the model checks too.
type knowledge struct {
	m      *model.Merchant
	buyers []string

	mu       sync.Mutex
	sessions map[string]known // by buyer
}

type known struct{ session, state string }

func newKnowledge(m *model.Merchant, buyers int) *knowledge {
	k := &knowledge{m: m, sessions: map[string]known{}}
	for i := range buyers {
		k.buyers = append(k.buyers, fmt.Sprintf("b%03d", i))
	}
	return k
}

// learn records what an answer says about a buyer's session.
func (k *knowledge) learn(in model.Input, out model.Output) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case in.Kind == model.GetPosition && out.Err == "not_found":
		delete(k.sessions, in.Buyer)
	case out.Err != "" || out.Buyer == "" || out.Session == "":
	case out.State == "ENDED":
		if k.sessions[out.Buyer].session == out.Session {
			delete(k.sessions, out.Buyer)
		}
	default:
		k.sessions[out.Buyer] = known{out.Session, out.State}
	}
}

// pick returns a buyer whose last known session is in one of states, or
// false.
func (k *knowledge) pick(rnd *rand.Rand, states ...string) (string, known, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var cands []string
	for b, s := range k.sessions {
		if slices.Contains(states, s.state) {
			cands = append(cands, b)
		}
	}
	if len(cands) == 0 {
		return "", known{}, false
	}
	slices.Sort(cands) // map order must not leak into a seeded run
	b := cands[rnd.IntN(len(cands))]
	return b, k.sessions[b], true
}

type worker struct {
	t     *Traffic
	id    int
	m     *model.Merchant
	k     *knowledge
	shard uint32
	rnd   *rand.Rand
}

func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		in := w.next()
		w.do(ctx, in)
		sleep(ctx, time.Duration(w.rnd.Int64N(int64(2*w.t.cfg.Think)+1)))
	}
}

// next chooses the next call: about 30% consults (from a random buyer of
// the pool, a quarter from after-sales pages, user levels 0-3), 18% ends,
// 8% escalations, 8% transfers (half to an agent, half to a group), 3%
// first replies — each of those on a session the workers know, else a
// consult instead —, 10% pull-next, 6% status changes (mostly back
// online), 4% limit changes (1-4), 10% position reads and 3% agent-list
// reads.
func (w *worker) next() model.Input {
	in := model.Input{Merchant: w.m.ID, RequestID: client.NewRequestID()}
	agent := func() string { return w.m.Agents[w.rnd.IntN(len(w.m.Agents))].ID }
	buyer := func() string { return w.k.buyers[w.rnd.IntN(len(w.k.buyers))] }
	r := w.rnd.IntN(100)
	switch {
	case r < 18:
		if _, s, ok := w.k.pick(w.rnd, "BOT", "QUEUED", "ASSIGNED"); ok {
			in.Kind, in.Session = model.End, s.session
			in.Reason = []string{"AGENT_ENDED", "BUYER_LEFT"}[w.rnd.IntN(2)]
			if s.state == "BOT" && w.rnd.IntN(2) == 0 {
				in.Reason = "BOT_RESOLVED"
			}
			return in
		}
	case r < 26:
		if _, s, ok := w.k.pick(w.rnd, "BOT"); ok {
			in.Kind, in.Session = model.Escalate, s.session
			return in
		}
	case r < 34:
		if _, s, ok := w.k.pick(w.rnd, "QUEUED", "ASSIGNED"); ok {
			in.Kind, in.Session = model.Transfer, s.session
			if w.rnd.IntN(2) == 0 {
				in.Agent = agent()
			} else {
				in.Group = w.m.Groups[w.rnd.IntN(len(w.m.Groups))].ID
			}
			return in
		}
	case r < 37:
		if _, s, ok := w.k.pick(w.rnd, "ASSIGNED"); ok {
			in.Kind, in.Session = model.FirstReply, s.session
			return in
		}
	case r < 47:
		in.Kind, in.Agent = model.PullNext, agent()
		return in
	case r < 53:
		in.Kind, in.Agent = model.SetStatus, agent()
		in.Status = []string{"ONLINE", "ONLINE", "ONLINE", "AWAY", "OFFLINE"}[w.rnd.IntN(5)]
		return in
	case r < 57:
		in.Kind, in.Agent, in.Limit = model.SetLimit, agent(), uint32(1+w.rnd.IntN(4))
		return in
	case r < 67:
		in.Kind, in.Buyer, in.RequestID = model.GetPosition, buyer(), ""
		return in
	case r < 70:
		in.Kind, in.RequestID = model.ListAgents, ""
		return in
	}
	in.Kind, in.Buyer = model.Consult, buyer()
	in.AfterSales = w.rnd.IntN(4) == 0
	in.UserLevel = uint32(w.rnd.IntN(4))
	return in
}

// do makes one call and records it; a write with no definite answer is
// called again with the same request id.
func (w *worker) do(ctx context.Context, in model.Input) {
	h := w.t.h
	op := model.Op{Client: w.id, Shard: w.shard, Input: in, Call: h.Now(), Output: model.Output{Unknown: true}}
	call := func(ctx context.Context) (model.Output, error) { return send(ctx, w.t.cl, w.m, in) }
	for {
		op.Attempts++
		cctx, cancel := context.WithTimeout(ctx, w.t.cfg.CallTimeout)
		if in.RequestID != "" {
			cctx = client.WithRequestID(cctx, in.RequestID)
		}
		out, err := call(cctx)
		cancel()
		if definite(err) {
			op.Output, op.Return, op.Error = out, h.Now(), errText(err)
			h.Add(op)
			w.k.learn(in, out)
			return
		}
		op.Error = errText(err)
		if in.Kind.Read() {
			return // a read that got no answer changed nothing: leave it out
		}
		if ctx.Err() != nil {
			w.t.mu.Lock()
			w.t.pending = append(w.t.pending, pending{op: op, call: call})
			w.t.mu.Unlock()
			return
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

// definite reports whether an error (or nil) is the cluster's answer: a
// result, BUSY, or a rejection of the request itself. Anything else —
// gave up retrying, UNAVAILABLE, a node cut off mid-call, INTERNAL — says
// nothing about whether the write was applied.
func definite(err error) bool {
	if err == nil || errors.Is(err, client.ErrBusy) {
		return true
	}
	var re *client.RetryError
	if errors.As(err, &re) {
		return false
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Code {
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodeFailedPrecondition:
		return true
	}
	return false
}

// send makes the call for in and turns its answer into an Output.
func send(ctx context.Context, cl *client.Client, m *model.Merchant, in model.Input) (model.Output, error) {
	var r *pb.Result
	var err error
	switch in.Kind {
	case model.Consult:
		c := &pb.Consult{MerchantId: in.Merchant, BuyerId: in.Buyer, UserLevel: in.UserLevel}
		if in.AfterSales {
			c.PageSource = pb.PageSource_PAGE_SOURCE_AFTER_SALES
		}
		r, err = cl.Consult(ctx, c)
	case model.Escalate:
		r, err = cl.Escalate(ctx, in.Merchant, in.Session)
	case model.Transfer:
		r, err = cl.Transfer(ctx, &pb.Transfer{MerchantId: in.Merchant, SessionId: in.Session, ToAgentId: in.Agent, ToGroupId: in.Group})
	case model.End:
		r, err = cl.End(ctx, in.Merchant, in.Session, pb.EndReason(pb.EndReason_value["END_REASON_"+in.Reason]))
	case model.FirstReply:
		r, err = cl.FirstReply(ctx, in.Merchant, in.Session)
	case model.PullNext:
		r, err = cl.PullNext(ctx, in.Merchant, in.Agent)
	case model.SetStatus:
		r, err = cl.SetStatus(ctx, in.Merchant, in.Agent, pb.AgentStatus(pb.AgentStatus_value["AGENT_STATUS_"+in.Status]))
	case model.SetLimit:
		a := m.Agents[slices.IndexFunc(m.Agents, func(a model.Agent) bool { return a.ID == in.Agent })]
		r, err = cl.UpsertAgent(ctx, agentConfig(in.Merchant, a.ID, a.Groups, in.Limit))
	case model.GetPosition:
		r, err = cl.GetPosition(ctx, in.Merchant, in.Buyer)
	case model.ListAgents:
		var views []*pb.AgentView
		views, err = cl.ListAgents(ctx, in.Merchant)
		if err != nil {
			return errOutput(err), err
		}
		return AgentsOutput(views), nil
	}
	if err != nil && !errors.Is(err, client.ErrBusy) {
		return errOutput(err), err
	}
	return ResultOutput(r), err
}

// short is an enum value's name without its prefix ("" for UNSPECIFIED).
func short(name, prefix string) string {
	s := strings.TrimPrefix(name, prefix)
	if s == "UNSPECIFIED" {
		return ""
	}
	return s
}

// ResultOutput is the Output of a Result.
func ResultOutput(r *pb.Result) model.Output {
	return model.Output{
		Outcome: short(r.GetOutcome().String(), "OUTCOME_"), Session: r.GetSessionId(),
		State: short(r.GetState().String(), "SESSION_STATE_"), Agent: r.GetAgentId(), Group: r.GetGroupId(),
		Buyer: r.GetBuyerId(), Position: r.GetPosition(),
	}
}

// AgentsOutput is the Output of ListAgents: the agents sorted by id.
func AgentsOutput(views []*pb.AgentView) model.Output {
	out := model.Output{Agents: []model.AgentView{}}
	for _, v := range views {
		out.Agents = append(out.Agents, model.AgentView{ID: v.GetConfig().GetAgentId(),
			Status: short(v.GetStatus().String(), "AGENT_STATUS_"), Limit: v.GetLimit(), Load: v.GetLoad()})
	}
	slices.SortFunc(out.Agents, func(a, b model.AgentView) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// errOutput is the Output of an error; Unknown unless it is definite.
func errOutput(err error) model.Output {
	if !definite(err) {
		return model.Output{Unknown: true}
	}
	var ce *client.Error
	errors.As(err, &ce)
	out := model.Output{ErrField: ce.Field}
	switch {
	case errors.Is(err, client.ErrNotFound):
		out.Err = "not_found"
	case errors.Is(err, client.ErrConflict):
		out.Err = "conflict"
	case errors.Is(err, client.ErrLimit):
		out.Err = "limit"
	case errors.Is(err, client.ErrInvalid):
		out.Err = "invalid"
	default:
		out.Err = "other: " + ce.Code.String()
	}
	return out
}
