package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/auth"
	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
	"github.com/frontdeskhq/frontdesk/shard"
)

// fakeNode is a Cluster of `shards` shards over in-memory state machines:
// it leads the shards in lead, holds but does not lead those in follow
// (Propose answers not leader), and holds no replica of the others. Every
// shard's leader is "n2" at leaderAddr as far as it knows.
type fakeNode struct {
	Cluster
	shards uint32
	lead   map[uint32]*fakeReplica
	follow map[uint32]*fakeReplica
}

const leaderAddr = "127.0.0.1:7002"

func newFakeNode(shards uint32) *fakeNode {
	return &fakeNode{shards: shards, lead: map[uint32]*fakeReplica{}, follow: map[uint32]*fakeReplica{}}
}

func (n *fakeNode) Shards() uint32 { return n.shards }

func (n *fakeNode) Replica(id uint32) (Replica, bool) {
	if r, ok := n.lead[id]; ok {
		return r, true
	}
	if r, ok := n.follow[id]; ok {
		return r, true
	}
	return nil, false
}

func (n *fakeNode) Leader(uint32) (string, string) { return "n2", leaderAddr }

// replicaFor makes this node lead (or, with follower, follow) merchant's
// shard, and returns the shard.
func (n *fakeNode) replicaFor(merchant string, follower bool) (uint32, *fakeReplica) {
	id := shard.ForMerchant(merchant, n.shards)
	r := &fakeReplica{shard: id, fsm: fsm.New(fsm.Config{Shard: id}), leader: !follower}
	if follower {
		n.follow[id] = r
	} else {
		n.lead[id] = r
	}
	return id, r
}

// fakeReplica applies each Propose as one entry of its state machine and
// counts the proposals and their commands.
type fakeReplica struct {
	shard  uint32
	fsm    *fsm.FSM
	leader bool

	mu        sync.Mutex
	index     uint64
	proposals []int // commands per Propose
}

func (r *fakeReplica) Propose(ctx context.Context, cmds ...*pb.Command) ([]*pb.Result, error) {
	if !r.leader {
		return nil, &shard.NotLeaderError{Shard: r.shard, LeaderID: "n2"}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proposals = append(r.proposals, len(cmds))
	r.index++
	for _, c := range cmds {
		if c.TimeUnixMs == 0 {
			c.TimeUnixMs = 1_700_000_000_000
		}
	}
	return r.fsm.ApplyEntry(r.index, &pb.Entry{Version: fsm.EntryVersion, Commands: cmds}), nil
}

func (r *fakeReplica) LinearizableRead(context.Context) error { return nil }
func (r *fakeReplica) FSM() *fsm.FSM                          { return r.fsm }

func (r *fakeReplica) proposed() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.proposals...)
}

// setupMerchant gives merchant m a default group "g" and online agents
// a0..a{agents-1} of limit 5, straight into r's state machine.
func setupMerchant(t *testing.T, r *fakeReplica, m string, agents int) {
	t.Helper()
	cmds := []*pb.Command{
		{Body: &pb.Command_UpsertMerchant{UpsertMerchant: &pb.UpsertMerchant{MerchantId: m}}},
		{Body: &pb.Command_UpsertGroup{UpsertGroup: &pb.UpsertGroup{MerchantId: m, GroupId: "g", Mode: pb.GroupMode_GROUP_MODE_PUSH}}},
		{Body: &pb.Command_UpsertMerchant{UpsertMerchant: &pb.UpsertMerchant{MerchantId: m, Settings: &pb.MerchantSettings{DefaultGroupId: "g"}}}},
	}
	for i := range agents {
		a := fmt.Sprintf("a%d", i)
		cmds = append(cmds,
			&pb.Command{Body: &pb.Command_UpsertAgent{UpsertAgent: &pb.UpsertAgent{MerchantId: m, AgentId: a, Limit: 5,
				Groups: []*pb.AgentGroup{{GroupId: "g", Skill: 50}}}}},
			&pb.Command{Body: &pb.Command_SetAgentStatus{SetAgentStatus: &pb.SetAgentStatus{MerchantId: m, AgentId: a,
				Status: pb.AgentStatus_AGENT_STATUS_ONLINE}}})
	}
	for i, c := range cmds {
		c.RequestId = fmt.Sprintf("setup/%s/%d", m, i)
	}
	res, err := r.Propose(context.Background(), cmds...)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range res {
		if err := fsm.ResultError(x); err != nil {
			t.Fatalf("setup %s command %d: %v", m, i, err)
		}
	}
	r.mu.Lock()
	r.proposals = nil
	r.mu.Unlock()
}

// merchantsOn returns n merchant ids, each on a shard of its own.
func merchantsOn(shards uint32, n int) []string {
	seen := map[uint32]bool{}
	var out []string
	for i := 0; len(out) < n; i++ {
		m := fmt.Sprintf("shop-%d", i)
		if s := shard.ForMerchant(m, shards); !seen[s] {
			seen[s] = true
			out = append(out, m)
		}
	}
	return out
}

// serve mounts s over HTTP (h2c) with the given interceptors and returns
// its dispatch and agent clients; token, if set, is sent with every call.
func serve(t *testing.T, s *Service, token string, interceptors ...connect.Interceptor) (frontdeskv1connect.DispatchServiceClient, frontdeskv1connect.AgentServiceClient) {
	t.Helper()
	srv := startServer(t, s, interceptors...)
	var opts []connect.ClientOption
	if token != "" {
		opts = append(opts, connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Authorization", "Bearer "+token)
				return next(ctx, req)
			}
		})))
	}
	return frontdeskv1connect.NewDispatchServiceClient(srv.Client(), srv.URL, opts...),
		frontdeskv1connect.NewAgentServiceClient(srv.Client(), srv.URL, opts...)
}

// startServer mounts s over HTTP/1.1 and h2c on a loopback port.
func startServer(t *testing.T, s *Service, interceptors ...connect.Interceptor) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	s.Register(mux, connect.WithInterceptors(interceptors...))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// wireError rebuilds the Connect error a batch result carries; nil for a
// response.
func wireError(t *testing.T, r *pb.BatchResult) *connect.Error {
	t.Helper()
	be := r.GetError()
	if be == nil {
		return nil
	}
	ce := connect.NewError(connect.Code(be.Code), errors.New(be.Message))
	for _, d := range be.Details {
		det, err := connect.NewErrorDetail(d)
		if err != nil {
			t.Fatal(err)
		}
		ce.AddDetail(det)
	}
	for k, v := range be.Meta {
		ce.Meta().Set(k, v)
	}
	return ce
}

// describe is an error's code, message, FieldError and LeaderHint, to
// compare a batch call's error with the unary call's.
func describe(err error) string {
	if err == nil {
		return "ok"
	}
	ce := new(connect.Error)
	if !errors.As(err, &ce) {
		return "not a connect error: " + err.Error()
	}
	out := ce.Code().String() + ": " + ce.Message()
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			out += " [undecodable " + d.Type() + "]"
			continue
		}
		switch v := v.(type) {
		case *pb.FieldError:
			out += fmt.Sprintf(" [field %s %s]", v.Field, v.Reason)
		case *pb.LeaderHint:
			out += fmt.Sprintf(" [hint shard %d %s %s indeterminate=%v]", v.Shard, v.LeaderId, v.LeaderApiAddr, v.Indeterminate)
		default:
			out += " [" + d.Type() + "]"
		}
	}
	return out
}

func fieldOf(ce *connect.Error) string {
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if fe, ok := v.(*pb.FieldError); ok {
				return fe.Field
			}
		}
	}
	return ""
}

func hintOf(ce *connect.Error) *pb.LeaderHint {
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if h, ok := v.(*pb.LeaderHint); ok {
				return h
			}
		}
	}
	return nil
}

func consultCall(id, merchant, buyer string) *pb.BatchCall {
	return &pb.BatchCall{Call: &pb.BatchCall_Consult{Consult: &pb.ConsultRequest{RequestId: id,
		Consult: &pb.Consult{MerchantId: merchant, BuyerId: buyer}}}}
}

func endCall(id, merchant, session string) *pb.BatchCall {
	return &pb.BatchCall{Call: &pb.BatchCall_End{End: &pb.EndRequest{RequestId: id, MerchantId: merchant, SessionId: session,
		Reason: pb.EndReason_END_REASON_AGENT_ENDED}}}
}

// unaryOf makes call i of a batch as its own unary RPC.
func unaryOf(ctx context.Context, d frontdeskv1connect.DispatchServiceClient, a frontdeskv1connect.AgentServiceClient, c *pb.BatchCall) error {
	var err error
	switch v := c.Call.(type) {
	case *pb.BatchCall_Consult:
		_, err = d.Consult(ctx, connect.NewRequest(v.Consult))
	case *pb.BatchCall_Escalate:
		_, err = d.Escalate(ctx, connect.NewRequest(v.Escalate))
	case *pb.BatchCall_Transfer:
		_, err = d.Transfer(ctx, connect.NewRequest(v.Transfer))
	case *pb.BatchCall_End:
		_, err = d.End(ctx, connect.NewRequest(v.End))
	case *pb.BatchCall_FirstReply:
		_, err = d.FirstReply(ctx, connect.NewRequest(v.FirstReply))
	case *pb.BatchCall_SetStatus:
		_, err = a.SetStatus(ctx, connect.NewRequest(v.SetStatus))
	case *pb.BatchCall_PullNext:
		_, err = a.PullNext(ctx, connect.NewRequest(v.PullNext))
	default:
		return errors.New("no call")
	}
	return err
}

// TestBatchMixed: good and bad calls for shards led here, followed here and
// held elsewhere, in one batch: each gets its own answer, the errors the
// same (code, message, FieldError, LeaderHint) as the unary call's, and the
// calls of one shard go to Raft as one proposal.
func TestBatchMixed(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode(16)
	ms := merchantsOn(16, 5)
	led1, led2, followed, elsewhere, followed2 := ms[0], ms[1], ms[2], ms[3], ms[4]
	_, r1 := n.replicaFor(led1, false)
	_, r2 := n.replicaFor(led2, false)
	fShard, _ := n.replicaFor(followed, true)
	_, _ = n.replicaFor(followed2, true)
	eShard := shard.ForMerchant(elsewhere, 16)
	setupMerchant(t, r1, led1, 2)
	setupMerchant(t, r2, led2, 2)
	svc := New(n, quiet())
	type observed struct {
		procedure string
		code      connect.Code
	}
	var seen []observed
	svc.SetBatchObserver(func(p string, c connect.Code) { seen = append(seen, observed{p, c}) })
	d, a := serve(t, svc, "")

	calls := []*pb.BatchCall{
		0: consultCall("r0", led1, "b0"),
		1: consultCall("r1", led2, "b1"),
		2: consultCall("r2", "", "b2"),                                                    // no merchant
		3: endCall("r3", led1, "no-such-session"),                                         // NOT_FOUND from the state machine
		4: consultCall("r4", followed, "b4"),                                              // not the leader here
		5: consultCall("r5", elsewhere, "b5"),                                             // no replica here
		6: {},                                                                             // no call set
		7: {Call: &pb.BatchCall_Transfer{Transfer: &pb.TransferRequest{RequestId: "r7"}}}, // transfer unset
		8: consultCall("r8", led1, "b8"),
		9: {Call: &pb.BatchCall_PullNext{PullNext: &pb.PullNextRequest{RequestId: "r9", MerchantId: led2, AgentId: "nobody"}}},
		10: {Call: &pb.BatchCall_SetStatus{SetStatus: &pb.SetStatusRequest{RequestId: "r10", MerchantId: led2, AgentId: "a1",
			Status: pb.AgentStatus_AGENT_STATUS_AWAY}}},
		11: {Call: &pb.BatchCall_Escalate{Escalate: &pb.EscalateRequest{RequestId: "r11", MerchantId: led1}}}, // no session id
		12: {Call: &pb.BatchCall_FirstReply{FirstReply: &pb.FirstReplyRequest{RequestId: "r12", MerchantId: followed2, SessionId: "s"}}},
	}
	resp, err := d.Batch(ctx, connect.NewRequest(&pb.BatchRequest{Calls: calls}))
	if err != nil {
		t.Fatalf("a batch with bad calls fails only those calls, not the RPC: %v", err)
	}
	res := resp.Msg.Results
	if len(res) != len(calls) {
		t.Fatalf("%d results for %d calls", len(res), len(calls))
	}
	for _, i := range []int{0, 1, 8} {
		if o := res[i].GetConsult().GetResult().GetOutcome(); o != pb.Outcome_OUTCOME_ASSIGNED {
			t.Errorf("call %d: want an ASSIGNED consult, got %v", i, res[i])
		}
	}
	if res[10].GetSetStatus().GetResult() == nil {
		t.Errorf("call 10: want a SetStatus response, got %v", res[10])
	}
	wantCode := map[int]connect.Code{2: connect.CodeInvalidArgument, 3: connect.CodeNotFound, 4: connect.CodeUnavailable,
		5: connect.CodeUnavailable, 6: connect.CodeInvalidArgument, 7: connect.CodeInvalidArgument, 9: connect.CodeNotFound,
		11: connect.CodeInvalidArgument, 12: connect.CodeUnavailable}
	for i, code := range wantCode {
		ce := wireError(t, res[i])
		if ce == nil || ce.Code() != code {
			t.Errorf("call %d: want %v, got %v", i, code, res[i])
		}
	}
	wantField := map[int]string{2: "merchant_id", 3: "session_id", 6: "call", 7: "transfer", 9: "agent_id", 11: "session_id"}
	for i, f := range wantField {
		if ce := wireError(t, res[i]); ce == nil || !strings.Contains(fieldOf(ce), f) {
			t.Errorf("call %d: want a FieldError naming %s, got %s", i, f, describe(wireError(t, res[i])))
		}
	}
	for i, s := range map[int]uint32{4: fShard, 5: eShard} {
		h := hintOf(wireError(t, res[i]))
		if h == nil || h.Shard != s || h.LeaderApiAddr != leaderAddr || h.LeaderId != "n2" {
			t.Errorf("call %d: want a LeaderHint for shard %d naming n2 at %s, got %v", i, s, leaderAddr, h)
		}
	}
	// The observer saw every call once, in order, as its own procedure
	// with its own code (0: success).
	const dsvc, asvc = "/frontdesk.v1.DispatchService/", "/frontdesk.v1.AgentService/"
	wantSeen := []string{0: dsvc + "Consult", 1: dsvc + "Consult", 2: dsvc + "Consult", 3: dsvc + "End",
		4: dsvc + "Consult", 5: dsvc + "Consult", 6: "", 7: dsvc + "Transfer", 8: dsvc + "Consult",
		9: asvc + "PullNext", 10: asvc + "SetStatus", 11: dsvc + "Escalate", 12: dsvc + "FirstReply"}
	if len(seen) != len(calls) {
		t.Fatalf("the batch observer saw %d calls, want %d: %v", len(seen), len(calls), seen)
	}
	for i, o := range seen {
		if o.procedure != wantSeen[i] || o.code != wantCode[i] {
			t.Errorf("call %d observed as (%q, %v), want (%q, %v)", i, o.procedure, o.code, wantSeen[i], wantCode[i])
		}
	}
	// Call 11 fails validation before Raft; the other calls of a shard go
	// in one proposal.
	if got := r1.proposed(); len(got) != 1 || got[0] != 3 {
		t.Errorf("led1's shard: want one proposal of 3 commands (calls 0, 3, 8), got %v", got)
	}
	if got := r2.proposed(); len(got) != 1 || got[0] != 3 {
		t.Errorf("led2's shard: want one proposal of 3 commands (calls 1, 9, 10), got %v", got)
	}
	// Each error is the unary call's error.
	for i := range wantCode {
		if i == 6 {
			continue // no unary procedure for an empty call
		}
		batch, unary := describe(wireError(t, res[i])), describe(unaryOf(ctx, d, a, calls[i]))
		if batch != unary {
			t.Errorf("call %d: batch answered %q, the unary call %q", i, batch, unary)
		}
	}
}

// TestBatchManyShards: a batch spread over every shard proposes once per
// shard, and every call gets its own session.
func TestBatchManyShards(t *testing.T) {
	n := newFakeNode(8)
	ms := merchantsOn(8, 8)
	var reps []*fakeReplica
	for _, m := range ms {
		_, r := n.replicaFor(m, false)
		setupMerchant(t, r, m, 4)
		reps = append(reps, r)
	}
	d, _ := serve(t, New(n, quiet()), "")
	var calls []*pb.BatchCall
	for i := range 64 {
		calls = append(calls, consultCall(fmt.Sprintf("r%d", i), ms[i%8], fmt.Sprintf("b%d", i)))
	}
	resp, err := d.Batch(context.Background(), connect.NewRequest(&pb.BatchRequest{Calls: calls}))
	if err != nil {
		t.Fatal(err)
	}
	sessions := map[string]bool{}
	for i, r := range resp.Msg.Results {
		res := r.GetConsult().GetResult()
		if res.GetOutcome() != pb.Outcome_OUTCOME_ASSIGNED || res.GetSessionId() == "" {
			t.Fatalf("call %d: want an ASSIGNED consult, got %v", i, r)
		}
		if sessions[res.GetSessionId()] {
			t.Fatalf("call %d: session %q given twice", i, res.GetSessionId())
		}
		sessions[res.GetSessionId()] = true
	}
	for i, r := range reps {
		if got := r.proposed(); len(got) != 1 || got[0] != 8 {
			t.Errorf("shard of %s: want one proposal of 8 commands, got %v", ms[i], got)
		}
	}
}

// TestBatchMalformed: no calls, or more than MaxBatchCalls, fail the whole
// RPC with INVALID_ARGUMENT naming "calls".
func TestBatchMalformed(t *testing.T) {
	d, _ := serve(t, New(newFakeNode(4), quiet()), "")
	for name, calls := range map[string][]*pb.BatchCall{
		"none":     nil,
		"too many": make([]*pb.BatchCall, MaxBatchCalls+1),
	} {
		for i := range calls {
			calls[i] = consultCall("r", "m", "b")
		}
		_, err := d.Batch(context.Background(), connect.NewRequest(&pb.BatchRequest{Calls: calls}))
		ce := new(connect.Error)
		if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || fieldOf(ce) != "calls" {
			t.Errorf("%s: want INVALID_ARGUMENT on field calls, got %s", name, describe(err))
		}
	}
}

// TestBatchAdmission: each consult of a batch is admitted on its own; one
// over the merchant's rate gets RESOURCE_EXHAUSTED with Retry-After, the
// others proceed.
func TestBatchAdmission(t *testing.T) {
	n := newFakeNode(4)
	m := merchantsOn(4, 1)[0]
	_, r := n.replicaFor(m, false)
	setupMerchant(t, r, m, 2)
	s := New(n, quiet())
	s.SetLimits(Limits{ConsultRate: 0.001, ConsultBurst: 2})
	d, _ := serve(t, s, "")
	resp, err := d.Batch(context.Background(), connect.NewRequest(&pb.BatchRequest{Calls: []*pb.BatchCall{
		consultCall("r1", m, "b1"), consultCall("r2", m, "b2"), consultCall("r3", m, "b3"), endCall("r4", m, "none"),
	}}))
	if err != nil {
		t.Fatal(err)
	}
	res := resp.Msg.Results
	if res[0].GetConsult() == nil || res[1].GetConsult() == nil {
		t.Errorf("the burst of two: want two consults, got %v, %v", res[0], res[1])
	}
	ce := wireError(t, res[2])
	if ce == nil || ce.Code() != connect.CodeResourceExhausted || ce.Meta().Get("Retry-After") == "" {
		t.Errorf("the third consult: want RESOURCE_EXHAUSTED with Retry-After, got %v", res[2])
	}
	if ce := wireError(t, res[3]); ce == nil || ce.Code() != connect.CodeNotFound {
		t.Errorf("an end is not rate limited: want NOT_FOUND for its session, got %v", res[3])
	}
}

// TestBatchAuthPerCall: behind the auth interceptor, each call is held to
// its own procedure's rule: another merchant, a role the procedure does
// not allow, or another agent is PERMISSION_DENIED for that call alone.
func TestBatchAuthPerCall(t *testing.T) {
	secret := []byte(strings.Repeat("s", auth.MinSecretBytes))
	ai, err := auth.NewInterceptor(secret)
	if err != nil {
		t.Fatal(err)
	}
	n := newFakeNode(8)
	ms := merchantsOn(8, 2)
	mine, other := ms[0], ms[1]
	_, r := n.replicaFor(mine, false)
	setupMerchant(t, r, mine, 2)
	_, ro := n.replicaFor(other, false)
	setupMerchant(t, ro, other, 2)
	s := New(n, quiet())
	token := func(c auth.Claims) string {
		c.Expires = time.Now().Add(time.Hour)
		tok, err := auth.Issue(secret, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	codes := func(d frontdeskv1connect.DispatchServiceClient, calls ...*pb.BatchCall) []string {
		t.Helper()
		resp, err := d.Batch(context.Background(), connect.NewRequest(&pb.BatchRequest{Calls: calls}))
		if err != nil {
			t.Fatalf("batch: %v", err)
		}
		var out []string
		for _, r := range resp.Msg.Results {
			if ce := wireError(t, r); ce != nil {
				out = append(out, ce.Code().String())
			} else {
				out = append(out, "ok")
			}
		}
		return out
	}
	pull := func(id, m, agent string) *pb.BatchCall {
		return &pb.BatchCall{Call: &pb.BatchCall_PullNext{PullNext: &pb.PullNextRequest{RequestId: id, MerchantId: m, AgentId: agent}}}
	}

	im, _ := serve(t, s, token(auth.Claims{Role: auth.RoleIMService, Merchants: []string{mine}}), ai)
	got := codes(im, consultCall("i1", mine, "b1"), consultCall("i2", other, "b2"), pull("i3", mine, "a0"), consultCall("i4", mine, "b4"))
	want := []string{"ok", "permission_denied", "permission_denied", "ok"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("IM service token for %s: want %v (another merchant, and PullNext is not an IM service's), got %v", mine, want, got)
	}
	if n := len(ro.proposed()); n != 0 {
		t.Errorf("the denied call reached the other merchant's shard: %d proposals", n)
	}

	// The sessions the IM service opened are a0's and a1's (limit 5 each):
	// find one of a1's, which agent a0 may not end.
	resp, err := im.Batch(context.Background(), connect.NewRequest(&pb.BatchRequest{Calls: []*pb.BatchCall{
		consultCall("i5", mine, "b5"), consultCall("i6", mine, "b6"), consultCall("i7", mine, "b7"), consultCall("i8", mine, "b8")}}))
	if err != nil {
		t.Fatal(err)
	}
	byAgent := map[string]string{}
	for _, x := range resp.Msg.Results {
		res := x.GetConsult().GetResult()
		byAgent[res.GetAgentId()] = res.GetSessionId()
	}
	if byAgent["a0"] == "" || byAgent["a1"] == "" {
		t.Fatalf("want a session for each of a0 and a1, got %v", byAgent)
	}
	agent, _ := serve(t, s, token(auth.Claims{Role: auth.RoleAgent, Merchants: []string{mine}, Agent: "a0"}), ai)
	got = codes(agent, pull("g1", mine, "a1"), endCall("g2", mine, byAgent["a1"]), endCall("g3", mine, byAgent["a0"]),
		consultCall("g4", mine, "b9"), pull("g5", mine, "a0"))
	want = []string{"permission_denied", "permission_denied", "ok", "permission_denied", "ok"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("agent a0's token: want %v (another agent's pull, another agent's session, own session, a consult, own pull), got %v", want, got)
	}

	op, _ := serve(t, s, token(auth.Claims{Role: auth.RoleOperator}), ai)
	if _, err := op.Batch(context.Background(), connect.NewRequest(&pb.BatchRequest{Calls: []*pb.BatchCall{consultCall("o1", mine, "b")}})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("an operator may make none of the calls: want the whole batch PERMISSION_DENIED, got %v", err)
	}
}

// panicReplica panics on Propose.
type panicReplica struct{ Replica }

func (panicReplica) Propose(context.Context, ...*pb.Command) ([]*pb.Result, error) { panic("boom") }

type panicNode struct{ *fakeNode }

func (n panicNode) Replica(id uint32) (Replica, bool) {
	if _, ok := n.lead[id]; ok {
		return panicReplica{}, true
	}
	return n.fakeNode.Replica(id)
}

// TestBatchPanicIsInternal: a panic while proposing one shard's calls
// answers those calls INTERNAL; the other shards' calls are not affected.
func TestBatchPanicIsInternal(t *testing.T) {
	n := newFakeNode(8)
	ms := merchantsOn(8, 2)
	n.replicaFor(ms[0], false)
	_, r := n.replicaFor(ms[1], true)
	r.leader = true
	delete(n.follow, r.shard)
	n.follow[r.shard] = r // held and led, but not in lead: Propose works
	setupMerchant(t, r, ms[1], 1)
	d, _ := serve(t, New(panicNode{n}, quiet()), "")
	resp, err := d.Batch(context.Background(), connect.NewRequest(&pb.BatchRequest{Calls: []*pb.BatchCall{
		consultCall("p1", ms[0], "b1"), consultCall("p2", ms[1], "b2")}}))
	if err != nil {
		t.Fatal(err)
	}
	if ce := wireError(t, resp.Msg.Results[0]); ce == nil || ce.Code() != connect.CodeInternal {
		t.Errorf("the panicking shard's call: want INTERNAL, got %v", resp.Msg.Results[0])
	}
	if resp.Msg.Results[1].GetConsult() == nil {
		t.Errorf("the other shard's call: want its consult, got %v", resp.Msg.Results[1])
	}
}
