package client

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
	"github.com/frontdeskhq/frontdesk/internal/batchwire"
)

// fakeCluster is an in-process stand-in for a frontdesk cluster: nodes are
// h2c httptest servers serving the generated handlers. By default the
// leader of a merchant's shard answers writes and linearizable reads, any
// node answers stale reads, and other nodes answer UNAVAILABLE with a
// LeaderHint naming the leader — like package dispatch. Tests change that
// with hook and watch.
type fakeCluster struct {
	t      *testing.T
	shards uint32
	nodes  []*fakeNode

	mu      sync.Mutex
	leaders []int // node index per shard; -1: no leader
	calls   []fakeCall
	// hook answers a unary call first; ok=false falls through to the
	// default behaviour.
	hook func(ctx context.Context, n *fakeNode, c fakeCall) (res *pb.Result, err error, ok bool)
	// watch serves EventService.Watch; the default streams events.
	watch  func(ctx context.Context, n *fakeNode, c fakeCall, s *connect.ServerStream[pb.WatchResponse]) error
	events []*pb.Event
	// rpcDelay holds every unary write and Batch RPC this long.
	rpcDelay time.Duration
	// noBatch: nodes answer Batch UNIMPLEMENTED, like an older build.
	noBatch bool
}

// fakeCall is one request as a node saw it.
type fakeCall struct {
	node      int
	procedure string
	merchant  string
	requestID string
	stale     bool
	afterSeq  uint64
	auth      string
	// batch: for a Batch RPC, how many calls it carried; for a call
	// carried in one, -1.
	batch int
}

type fakeNode struct {
	frontdeskv1connect.UnimplementedDispatchServiceHandler
	frontdeskv1connect.UnimplementedAgentServiceHandler
	frontdeskv1connect.UnimplementedAdminServiceHandler
	frontdeskv1connect.UnimplementedEventServiceHandler
	frontdeskv1connect.UnimplementedClusterServiceHandler

	fc   *fakeCluster
	idx  int
	id   string
	addr string // host:port
	srv  *httptest.Server
	// down makes the node reset every request, like a killed process
	// whose port still accepts connections.
	down atomic.Bool
}

func newFakeCluster(t *testing.T, nodes int, shards uint32) *fakeCluster {
	t.Helper()
	return newFakeClusterTLS(t, nodes, shards, false)
}

// newFakeClusterTLS serves https (HTTP/2 and HTTP/1.1 by ALPN) when tls is
// set; the shard map still names nodes by host:port.
func newFakeClusterTLS(t *testing.T, nodes int, shards uint32, tls bool) *fakeCluster {
	t.Helper()
	fc := &fakeCluster{t: t, shards: shards, leaders: make([]int, shards)}
	for i := range nodes {
		n := &fakeNode{fc: fc, idx: i, id: fmt.Sprintf("node%d", i)}
		mux := http.NewServeMux()
		mux.Handle(frontdeskv1connect.NewDispatchServiceHandler(n))
		mux.Handle(frontdeskv1connect.NewAgentServiceHandler(n))
		mux.Handle(frontdeskv1connect.NewAdminServiceHandler(n))
		mux.Handle(frontdeskv1connect.NewEventServiceHandler(n))
		mux.Handle(frontdeskv1connect.NewClusterServiceHandler(n))
		n.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.down.Load() {
				panic(http.ErrAbortHandler)
			}
			mux.ServeHTTP(w, r)
		}))
		n.srv.Config.Protocols = new(http.Protocols)
		n.srv.Config.Protocols.SetHTTP1(true)
		n.srv.Config.Protocols.SetUnencryptedHTTP2(true)
		if tls {
			n.srv.EnableHTTP2 = true
			n.srv.StartTLS()
		} else {
			n.srv.Start()
		}
		t.Cleanup(n.srv.Close)
		n.addr = strings.TrimPrefix(strings.TrimPrefix(n.srv.URL, "http://"), "https://")
		fc.nodes = append(fc.nodes, n)
	}
	return fc
}

// fakeShard is the server's shard function, written independently of
// ForMerchant.
func (fc *fakeCluster) fakeShard(merchant string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(merchant))
	return h.Sum32() % fc.shards
}

func (fc *fakeCluster) setLeader(shard uint32, node int) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.leaders[shard] = node
}

func (fc *fakeCluster) leaderOf(shard uint32) int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.leaders[shard]
}

func (fc *fakeCluster) setHook(h func(ctx context.Context, n *fakeNode, c fakeCall) (*pb.Result, error, bool)) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.hook = h
}

// addrs are every node's address, for New.
func (fc *fakeCluster) addrs() []string {
	var out []string
	for _, n := range fc.nodes {
		out = append(out, n.addr)
	}
	return out
}

// callsTo returns the calls of one procedure, in order.
func (fc *fakeCluster) callsTo(procedure string) []fakeCall {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var out []fakeCall
	for _, c := range fc.calls {
		if c.procedure == procedure {
			out = append(out, c)
		}
	}
	return out
}

func (fc *fakeCluster) allCalls() []fakeCall {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]fakeCall(nil), fc.calls...)
}

func (fc *fakeCluster) resetCalls() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.calls = nil
}

// record notes a request and returns what it was.
func (n *fakeNode) record(procedure string, h http.Header, msg proto.Message) fakeCall {
	c := fakeCall{node: n.idx, procedure: procedure, auth: h.Get("Authorization")}
	inspect(msg.ProtoReflect(), &c, true)
	n.fc.mu.Lock()
	n.fc.calls = append(n.fc.calls, c)
	n.fc.mu.Unlock()
	return c
}

// inspect reads merchant_id, request_id, stale and after_seq from a request
// and its first-level messages (Consult, Transfer, UpsertAgent...).
func inspect(m protoreflect.Message, c *fakeCall, top bool) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		switch {
		case f.Name() == "merchant_id":
			c.merchant = m.Get(f).String()
		case top && f.Name() == "request_id":
			c.requestID = m.Get(f).String()
		case top && f.Name() == "stale":
			c.stale = m.Get(f).Bool()
		case top && f.Name() == "after_seq":
			c.afterSeq = m.Get(f).Uint()
		case top && f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() && m.Has(f):
			inspect(m.Get(f).Message(), c, false)
		}
	}
}

// unavailable is UNAVAILABLE with a LeaderHint, as dispatch sends it.
func (fc *fakeCluster) unavailable(shard uint32, leader int, indeterminate bool) error {
	ce := connect.NewError(connect.CodeUnavailable, fmt.Errorf("fake: not the leader of shard %d", shard))
	h := &pb.LeaderHint{Shard: shard, Indeterminate: indeterminate}
	if leader >= 0 {
		h.LeaderId, h.LeaderApiAddr = fc.nodes[leader].id, fc.nodes[leader].addr
	}
	d, err := connect.NewErrorDetail(h)
	if err != nil {
		panic(err)
	}
	ce.AddDetail(d)
	return ce
}

// fieldError is an error with a FieldError detail, as dispatch sends it.
func fieldError(code connect.Code, field, reason string) error {
	ce := connect.NewError(code, fmt.Errorf("fake: %s is %s", field, reason))
	d, err := connect.NewErrorDetail(&pb.FieldError{Field: field, Reason: reason})
	if err != nil {
		panic(err)
	}
	ce.AddDetail(d)
	return ce
}

// answer is the default behaviour of a unary merchant call.
func (n *fakeNode) answer(ctx context.Context, c fakeCall) (*pb.Result, error) {
	n.fc.mu.Lock()
	hook := n.fc.hook
	n.fc.mu.Unlock()
	if hook != nil {
		if res, err, ok := hook(ctx, n, c); ok {
			return res, err
		}
	}
	shard := n.fc.fakeShard(c.merchant)
	leader := n.fc.leaderOf(shard)
	if leader != n.idx && !c.stale {
		return nil, n.fc.unavailable(shard, leader, false)
	}
	return &pb.Result{Outcome: pb.Outcome_OUTCOME_ASSIGNED, SessionId: "s-" + c.requestID}, nil
}

// serve records and answers a unary call; wrap builds the response.
func serve[Req, Res any](ctx context.Context, n *fakeNode, r *connect.Request[Req], wrap func(*pb.Result) *Res) (*connect.Response[Res], error) {
	c := n.record(r.Spec().Procedure, r.Header(), any(r.Msg).(proto.Message))
	n.fc.delay()
	res, err := n.answer(ctx, c)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(wrap(res)), nil
}

func (n *fakeNode) Consult(ctx context.Context, r *connect.Request[pb.ConsultRequest]) (*connect.Response[pb.ConsultResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.ConsultResponse { return &pb.ConsultResponse{Result: res} })
}

func (n *fakeNode) Escalate(ctx context.Context, r *connect.Request[pb.EscalateRequest]) (*connect.Response[pb.EscalateResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.EscalateResponse { return &pb.EscalateResponse{Result: res} })
}

func (n *fakeNode) Transfer(ctx context.Context, r *connect.Request[pb.TransferRequest]) (*connect.Response[pb.TransferResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.TransferResponse { return &pb.TransferResponse{Result: res} })
}

func (n *fakeNode) End(ctx context.Context, r *connect.Request[pb.EndRequest]) (*connect.Response[pb.EndResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.EndResponse { return &pb.EndResponse{Result: res} })
}

func (n *fakeNode) FirstReply(ctx context.Context, r *connect.Request[pb.FirstReplyRequest]) (*connect.Response[pb.FirstReplyResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.FirstReplyResponse { return &pb.FirstReplyResponse{Result: res} })
}

func (n *fakeNode) GetSession(ctx context.Context, r *connect.Request[pb.GetSessionRequest]) (*connect.Response[pb.GetSessionResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.GetSessionResponse {
		return &pb.GetSessionResponse{Session: &pb.Session{SessionId: r.Msg.SessionId, MerchantId: r.Msg.MerchantId}}
	})
}

func (n *fakeNode) GetPosition(ctx context.Context, r *connect.Request[pb.GetPositionRequest]) (*connect.Response[pb.GetPositionResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.GetPositionResponse { return &pb.GetPositionResponse{Result: res} })
}

func (n *fakeNode) SetStatus(ctx context.Context, r *connect.Request[pb.SetStatusRequest]) (*connect.Response[pb.SetStatusResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.SetStatusResponse { return &pb.SetStatusResponse{Result: res} })
}

func (n *fakeNode) PullNext(ctx context.Context, r *connect.Request[pb.PullNextRequest]) (*connect.Response[pb.PullNextResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.PullNextResponse { return &pb.PullNextResponse{Result: res} })
}

func (n *fakeNode) UpsertMerchant(ctx context.Context, r *connect.Request[pb.UpsertMerchantRequest]) (*connect.Response[pb.UpsertMerchantResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.UpsertMerchantResponse { return &pb.UpsertMerchantResponse{Result: res} })
}

func (n *fakeNode) DeleteMerchant(ctx context.Context, r *connect.Request[pb.DeleteMerchantRequest]) (*connect.Response[pb.DeleteMerchantResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.DeleteMerchantResponse { return &pb.DeleteMerchantResponse{Result: res} })
}

func (n *fakeNode) GetMerchant(ctx context.Context, r *connect.Request[pb.GetMerchantRequest]) (*connect.Response[pb.GetMerchantResponse], error) {
	return serve(ctx, n, r, func(*pb.Result) *pb.GetMerchantResponse {
		return &pb.GetMerchantResponse{Shard: n.fc.fakeShard(r.Msg.MerchantId)}
	})
}

// ListMerchants answers with one merchant named after each shard asked
// about, from the shard's leader only.
func (n *fakeNode) ListMerchants(ctx context.Context, r *connect.Request[pb.ListMerchantsRequest]) (*connect.Response[pb.ListMerchantsResponse], error) {
	n.record(r.Spec().Procedure, r.Header(), r.Msg)
	var ids []string
	if s := r.Msg.ShardPlusOne; s > 0 && n.fc.leaderOf(s-1) == n.idx {
		ids = append(ids, fmt.Sprintf("merchant-of-shard-%02d", s-1))
	}
	return connect.NewResponse(&pb.ListMerchantsResponse{MerchantIds: ids}), nil
}

func (n *fakeNode) UpsertGroup(ctx context.Context, r *connect.Request[pb.UpsertGroupRequest]) (*connect.Response[pb.UpsertGroupResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.UpsertGroupResponse { return &pb.UpsertGroupResponse{Result: res} })
}

func (n *fakeNode) DeleteGroup(ctx context.Context, r *connect.Request[pb.DeleteGroupRequest]) (*connect.Response[pb.DeleteGroupResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.DeleteGroupResponse { return &pb.DeleteGroupResponse{Result: res} })
}

func (n *fakeNode) UpsertAgent(ctx context.Context, r *connect.Request[pb.UpsertAgentRequest]) (*connect.Response[pb.UpsertAgentResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.UpsertAgentResponse { return &pb.UpsertAgentResponse{Result: res} })
}

func (n *fakeNode) DeleteAgent(ctx context.Context, r *connect.Request[pb.DeleteAgentRequest]) (*connect.Response[pb.DeleteAgentResponse], error) {
	return serve(ctx, n, r, func(res *pb.Result) *pb.DeleteAgentResponse { return &pb.DeleteAgentResponse{Result: res} })
}

func (n *fakeNode) ListAgents(ctx context.Context, r *connect.Request[pb.ListAgentsRequest]) (*connect.Response[pb.ListAgentsResponse], error) {
	return serve(ctx, n, r, func(*pb.Result) *pb.ListAgentsResponse {
		return &pb.ListAgentsResponse{Agents: []*pb.AgentView{{Limit: 5}}}
	})
}

func (n *fakeNode) GetQueue(ctx context.Context, r *connect.Request[pb.GetQueueRequest]) (*connect.Response[pb.GetQueueResponse], error) {
	return serve(ctx, n, r, func(*pb.Result) *pb.GetQueueResponse { return &pb.GetQueueResponse{Length: r.Msg.Limit} })
}

func (n *fakeNode) GetStats(ctx context.Context, r *connect.Request[pb.GetStatsRequest]) (*connect.Response[pb.GetStatsResponse], error) {
	return serve(ctx, n, r, func(*pb.Result) *pb.GetStatsResponse { return &pb.GetStatsResponse{Load: 1} })
}

// GetShardMap reports the cluster as the fake sees it: every node is a
// voter of every shard.
func (n *fakeNode) GetShardMap(ctx context.Context, r *connect.Request[pb.GetShardMapRequest]) (*connect.Response[pb.GetShardMapResponse], error) {
	n.record(r.Spec().Procedure, r.Header(), r.Msg)
	m := &pb.GetShardMapResponse{Shards: n.fc.shards}
	var voters []string
	for _, o := range n.fc.nodes {
		m.Nodes = append(m.Nodes, &pb.Node{Id: o.id, ApiAddr: o.addr, State: "alive"})
		voters = append(voters, o.id)
	}
	for s := range n.fc.shards {
		si := &pb.ShardInfo{Shard: s, VoterIds: voters}
		if l := n.fc.leaderOf(s); l >= 0 {
			si.LeaderId, si.LeaderApiAddr = n.fc.nodes[l].id, n.fc.nodes[l].addr
		}
		m.ShardInfos = append(m.ShardInfos, si)
	}
	return connect.NewResponse(m), nil
}

func (n *fakeNode) GetStatus(ctx context.Context, r *connect.Request[pb.GetStatusRequest]) (*connect.Response[pb.GetStatusResponse], error) {
	n.record(r.Spec().Procedure, r.Header(), r.Msg)
	return connect.NewResponse(&pb.GetStatusResponse{NodeId: n.id}), nil
}

// TransferLeadership moves the shard's leadership to the named node (or
// the next one) when asked at the leader.
func (n *fakeNode) TransferLeadership(ctx context.Context, r *connect.Request[pb.TransferLeadershipRequest]) (*connect.Response[pb.TransferLeadershipResponse], error) {
	n.record(r.Spec().Procedure, r.Header(), r.Msg)
	s := r.Msg.Shard
	if l := n.fc.leaderOf(s); l != n.idx {
		return nil, n.fc.unavailable(s, l, false)
	}
	to := (n.idx + 1) % len(n.fc.nodes)
	for i, o := range n.fc.nodes {
		if o.id == r.Msg.ToNodeId {
			to = i
		}
	}
	n.fc.setLeader(s, to)
	return connect.NewResponse(&pb.TransferLeadershipResponse{LeaderId: n.fc.nodes[to].id}), nil
}

// Watch streams the merchant's events after after_seq from any node, then
// waits, unless the test set its own watch.
func (n *fakeNode) Watch(ctx context.Context, r *connect.Request[pb.WatchRequest], s *connect.ServerStream[pb.WatchResponse]) error {
	c := n.record(r.Spec().Procedure, r.Header(), r.Msg)
	n.fc.mu.Lock()
	watch := n.fc.watch
	n.fc.mu.Unlock()
	if watch != nil {
		return watch(ctx, n, c, s)
	}
	if out := n.fc.eventsAfter(c.merchant, c.afterSeq); len(out) > 0 {
		if err := s.Send(&pb.WatchResponse{Events: out}); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// eventsAfter is the merchant's events with seq > after.
func (fc *fakeCluster) eventsAfter(merchant string, after uint64) []*pb.Event {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var out []*pb.Event
	for _, e := range fc.events {
		if e.Seq > after && e.MerchantId == merchant {
			out = append(out, e)
		}
	}
	return out
}

func (fc *fakeCluster) delay() {
	fc.mu.Lock()
	d := fc.rpcDelay
	fc.mu.Unlock()
	time.Sleep(d)
}

// batchProcedures names the procedure of each BatchCall field.
var batchProcedures = map[protoreflect.Name]string{
	"consult":     frontdeskv1connect.DispatchServiceConsultProcedure,
	"escalate":    frontdeskv1connect.DispatchServiceEscalateProcedure,
	"transfer":    frontdeskv1connect.DispatchServiceTransferProcedure,
	"end":         frontdeskv1connect.DispatchServiceEndProcedure,
	"first_reply": frontdeskv1connect.DispatchServiceFirstReplyProcedure,
	"set_status":  frontdeskv1connect.AgentServiceSetStatusProcedure,
	"pull_next":   frontdeskv1connect.AgentServicePullNextProcedure,
}

// Batch records the RPC and each call in it (as a call of its own
// procedure, batch -1) and answers each call as the unary procedure would,
// errors as BatchErrors, like dispatch.
func (n *fakeNode) Batch(ctx context.Context, r *connect.Request[pb.BatchRequest]) (*connect.Response[pb.BatchResponse], error) {
	n.fc.mu.Lock()
	n.fc.calls = append(n.fc.calls, fakeCall{node: n.idx, procedure: r.Spec().Procedure, auth: r.Header().Get("Authorization"), batch: len(r.Msg.Calls)})
	noBatch := n.fc.noBatch
	n.fc.mu.Unlock()
	if noBatch {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("fake: no Batch here"))
	}
	n.fc.delay()
	// The calls are answered concurrently (as dispatch proposes to
	// several shards at once), so a hook may block one without the others.
	out := &pb.BatchResponse{Results: make([]*pb.BatchResult, len(r.Msg.Calls))}
	var wg sync.WaitGroup
	for i, call := range r.Msg.Calls {
		m := call.ProtoReflect()
		f := m.WhichOneof(m.Descriptor().Oneofs().ByName("call"))
		if f == nil {
			out.Results[i] = batchwire.Result(fieldError(connect.CodeInvalidArgument, "call", "invalid"))
			continue
		}
		c := fakeCall{node: n.idx, procedure: batchProcedures[f.Name()], auth: r.Header().Get("Authorization"), batch: -1}
		inspect(m.Get(f).Message(), &c, true)
		n.fc.mu.Lock()
		n.fc.calls = append(n.fc.calls, c)
		n.fc.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := n.answer(ctx, c)
			if err != nil {
				out.Results[i] = batchwire.Result(err)
				return
			}
			br := &pb.BatchResult{}
			rm := br.ProtoReflect()
			rf := rm.Descriptor().Fields().ByName(f.Name())
			resp := rm.NewField(rf).Message()
			resp.Set(resp.Descriptor().Fields().ByName("result"), protoreflect.ValueOfMessage(res.ProtoReflect()))
			rm.Set(rf, protoreflect.ValueOfMessage(resp))
			out.Results[i] = br
		}()
	}
	wg.Wait()
	return connect.NewResponse(out), nil
}
