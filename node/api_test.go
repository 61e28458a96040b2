package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/proto"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
	"github.com/frontdeskhq/frontdesk/node"
)

// startNode runs a one-node cluster in process on loopback ports.
func startNode(t *testing.T, set ...func(*node.Config)) *node.Node {
	t.Helper()
	cfg := &node.Config{
		ID: "n1", DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		GossipAddr: "127.0.0.1:0", BootstrapExpect: 1, Shards: 4, FastRaft: true,
	}
	for _, f := range set {
		f(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := node.Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Kill)
	select {
	case <-n.Formed():
	case <-time.After(20 * time.Second):
		t.Fatal("cluster did not form")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + n.APIAddr() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// protocols runs each case over Connect, gRPC and gRPC-Web.
var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect", nil},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
}

func fieldOf(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return ""
	}
	for _, d := range ce.Details() {
		if v, e := d.Value(); e == nil {
			if fe, ok := v.(*pb.FieldError); ok {
				return fe.Field
			}
		}
	}
	return ""
}

// TestBadInputOverTheWire: missing fields, ids over the limits, unknown
// merchant, malformed JSON and protobuf, bodies over 1 MiB → the right code
// naming the field, and nothing changed.
func TestBadInputOverTheWire(t *testing.T) {
	n := startNode(t)
	base := "http://" + n.APIAddr()
	ctx := context.Background()
	admin := frontdeskv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.UpsertMerchant(ctx, connect.NewRequest(&pb.UpsertMerchantRequest{RequestId: "setup",
		Merchant: &pb.UpsertMerchant{MerchantId: "m1"}})); err != nil {
		t.Fatal(err)
	}
	stateOf := func() string {
		st, err := admin.GetStats(ctx, connect.NewRequest(&pb.GetStatsRequest{MerchantId: "m1"}))
		if err != nil {
			t.Fatal(err)
		}
		ms, err := admin.ListMerchants(ctx, connect.NewRequest(&pb.ListMerchantsRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		return st.Msg.String() + "|" + strings.Join(ms.Msg.MerchantIds, ",")
	}
	before := stateOf()
	long := strings.Repeat("x", 129)
	cases := []struct {
		name  string
		req   *pb.ConsultRequest
		code  connect.Code
		field string
	}{
		{"no consult", &pb.ConsultRequest{RequestId: "r"}, connect.CodeInvalidArgument, "consult"},
		{"no request id", &pb.ConsultRequest{Consult: &pb.Consult{MerchantId: "m1", BuyerId: "b"}}, connect.CodeInvalidArgument, "request_id"},
		{"no buyer", &pb.ConsultRequest{RequestId: "r", Consult: &pb.Consult{MerchantId: "m1"}}, connect.CodeInvalidArgument, "buyer_id"},
		{"no merchant", &pb.ConsultRequest{RequestId: "r", Consult: &pb.Consult{BuyerId: "b"}}, connect.CodeInvalidArgument, "merchant_id"},
		{"long buyer", &pb.ConsultRequest{RequestId: "r", Consult: &pb.Consult{MerchantId: "m1", BuyerId: long}}, connect.CodeInvalidArgument, "buyer_id"},
		{"long merchant", &pb.ConsultRequest{RequestId: "r", Consult: &pb.Consult{MerchantId: long, BuyerId: "b"}}, connect.CodeInvalidArgument, "merchant_id"},
		{"long request id", &pb.ConsultRequest{RequestId: long, Consult: &pb.Consult{MerchantId: "m1", BuyerId: "b"}}, connect.CodeInvalidArgument, "request_id"},
		{"bad enum", &pb.ConsultRequest{RequestId: "r", Consult: &pb.Consult{MerchantId: "m1", BuyerId: "b", PageSource: 99}}, connect.CodeInvalidArgument, "page_source"},
		{"too many attributes", &pb.ConsultRequest{RequestId: "r", Consult: &pb.Consult{MerchantId: "m1", BuyerId: "b", Attributes: make([]*pb.Attribute, 33)}}, connect.CodeInvalidArgument, "attributes"},
		{"unknown merchant", &pb.ConsultRequest{RequestId: "r", Consult: &pb.Consult{MerchantId: "nope", BuyerId: "b"}}, connect.CodeNotFound, "merchant_id"},
		{"no route", &pb.ConsultRequest{RequestId: "r", Consult: &pb.Consult{MerchantId: "m1", BuyerId: "b"}}, connect.CodeFailedPrecondition, "merchant_id"},
	}
	for i := range cases[8].req.Consult.Attributes {
		cases[8].req.Consult.Attributes[i] = &pb.Attribute{Key: "k", Value: "v"}
	}
	for _, p := range protocols {
		dispatch := frontdeskv1connect.NewDispatchServiceClient(h2cClient(), base, p.opts...)
		for _, tc := range cases {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				_, err := dispatch.Consult(ctx, connect.NewRequest(tc.req))
				if connect.CodeOf(err) != tc.code {
					t.Fatalf("want %v, got %v (%v)", tc.code, connect.CodeOf(err), err)
				}
				if got := fieldOf(err); got != tc.field {
					t.Fatalf("want field %q, got %q (%v)", tc.field, got, err)
				}
				if !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("message does not name %q: %v", tc.field, err)
				}
			})
		}
		t.Run(p.name+"/body over 1 MiB", func(t *testing.T) {
			big := &pb.ConsultRequest{RequestId: "r", Consult: &pb.Consult{MerchantId: "m1", BuyerId: "b",
				Category: strings.Repeat("y", 1<<20+10)}}
			_, err := dispatch.Consult(ctx, connect.NewRequest(big))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Fatalf("want ResourceExhausted, got %v (%v)", connect.CodeOf(err), err)
			}
		})
	}
	validConsult, err := proto.Marshal(&pb.ConsultRequest{RequestId: "r-utf8", Consult: &pb.Consult{MerchantId: "m1", BuyerId: "b-utf8"}})
	if err != nil {
		t.Fatal(err)
	}
	raw := []struct {
		name, contentType, body string
		status                  int
	}{
		{"malformed json", "application/json", `{"requestId": "r", "consult": {`, http.StatusBadRequest},
		{"wrong json type", "application/json", `{"requestId": 5}`, http.StatusBadRequest},
		{"malformed protobuf", "application/proto", "\x0a\xff\xff\xff", http.StatusBadRequest},
		// A well-formed consult whose request id (repeated last: it wins)
		// is not UTF-8, which proto3 strings must be.
		{"string not UTF-8", "application/proto", string(validConsult) + "\x0a\x02\xff\xfe", http.StatusBadRequest},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(base+"/frontdesk.v1.DispatchService/Consult", tc.contentType, bytes.NewBufferString(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), "invalid_argument") {
				t.Fatalf("want %d invalid_argument, got %d %s", tc.status, resp.StatusCode, body)
			}
		})
	}
	if after := stateOf(); after != before {
		t.Fatalf("bad input changed the state:\nbefore %s\nafter  %s", before, after)
	}
}

// TestReflection: gRPC reflection lists every service (what grpcurl and
// buf curl use), over HTTP/2 as gRPC requires.
func TestReflection(t *testing.T) {
	n := startNode(t)
	rc := grpcreflect.NewClient(h2cClient(), "http://"+n.APIAddr())
	stream := rc.NewStream(context.Background())
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, n := range names {
		got[string(n)] = true
	}
	for _, want := range []string{"frontdesk.v1.DispatchService", "frontdesk.v1.AgentService",
		"frontdesk.v1.AdminService", "frontdesk.v1.EventService", "frontdesk.v1.ClusterService"} {
		if !got[want] {
			t.Errorf("reflection does not list %s (got %v)", want, names)
		}
	}
}

// TestOperatorEndpoints: health, readiness, Prometheus metrics with the
// RPC and per-shard series, and pprof, all on the API port.
func TestOperatorEndpoints(t *testing.T) {
	n := startNode(t)
	base := "http://" + n.APIAddr()
	admin := frontdeskv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.UpsertMerchant(context.Background(), connect.NewRequest(&pb.UpsertMerchantRequest{
		RequestId: "r", Merchant: &pb.UpsertMerchant{MerchantId: "m"}})); err != nil {
		t.Fatal(err)
	}
	// A Batch of a bad consult and an empty call: one RPC, two calls.
	disp := frontdeskv1connect.NewDispatchServiceClient(http.DefaultClient, base)
	if _, err := disp.Batch(context.Background(), connect.NewRequest(&pb.BatchRequest{Calls: []*pb.BatchCall{
		{Call: &pb.BatchCall_Consult{Consult: &pb.ConsultRequest{RequestId: "c1", Consult: &pb.Consult{BuyerId: "b"}}}}, {},
	}})); err != nil {
		t.Fatal(err)
	}
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	get("/healthz")
	get("/readyz")
	metrics := get("/metrics")
	for _, want := range []string{
		`frontdesk_rpc_requests_total{code="ok",procedure="/frontdesk.v1.AdminService/UpsertMerchant"} 1`,
		`frontdesk_rpc_duration_seconds_bucket{procedure="/frontdesk.v1.AdminService/UpsertMerchant",le="0.025"}`, // the p99 target a boundary
		`frontdesk_rpc_requests_total{code="ok",procedure="/frontdesk.v1.DispatchService/Batch"} 1`,
		`frontdesk_batch_calls_total{code="invalid_argument",procedure="/frontdesk.v1.DispatchService/Consult"} 1`,
		`frontdesk_batch_calls_total{code="invalid_argument",procedure="/frontdesk.v1.DispatchService/Batch"} 1`,
		`frontdesk_shard_raft_state{shard="0",state="Leader"} 1`,
		`frontdesk_shard_commit_index{shard="3"}`,
		`frontdesk_shard_apply_seconds_count`,
		`frontdesk_sessions{shard="0",state="QUEUED"}`,
		`frontdesk_queue_length{shard="1"}`,
		`frontdesk_shard_proposed_entries_total{shard="0"}`,
		`frontdesk_shard_proposed_commands_total{shard="0"}`,
		`frontdesk_raft_heartbeats_coalesced_total`,
		`frontdesk_raft_heartbeat_batches_total`,
		`frontdesk_raft_heartbeat_timeouts_total`,
		`frontdesk_raft_stale_conns_total 0`,
		`frontdesk_raft_peer_senders_retired_total 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The UpsertMerchant above was proposed by some shard's leader here.
	var proposed float64
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "frontdesk_shard_proposed_commands_total{") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				proposed += v
			}
		}
	}
	if proposed < 1 {
		t.Errorf("frontdesk_shard_proposed_commands_total sums to %v over the shards; want ≥ 1", proposed)
	}
	if !strings.Contains(get("/debug/pprof/"), "goroutine") {
		t.Error("/debug/pprof/ does not list profiles")
	}
}

// TestConsultAdmission: a merchant over --consult-rate gets
// RESOURCE_EXHAUSTED with Retry-After, and the refused consult changes nothing.
func TestConsultAdmission(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.ConsultRate, c.ConsultBurst = 0.01, 1 })
	base := "http://" + n.APIAddr()
	ctx := context.Background()
	admin := frontdeskv1connect.NewAdminServiceClient(http.DefaultClient, base)
	for i, m := range []*pb.UpsertMerchant{{MerchantId: "m1"}} {
		if _, err := admin.UpsertMerchant(ctx, connect.NewRequest(&pb.UpsertMerchantRequest{RequestId: fmt.Sprint("s", i), Merchant: m})); err != nil {
			t.Fatal(err)
		}
	}
	dispatch := frontdeskv1connect.NewDispatchServiceClient(http.DefaultClient, base)
	consult := func(buyer string) error {
		_, err := dispatch.Consult(ctx, connect.NewRequest(&pb.ConsultRequest{RequestId: buyer,
			Consult: &pb.Consult{MerchantId: "m1", BuyerId: buyer}}))
		return err
	}
	// The first consult is admitted (and fails on routing: m1 has no group).
	if err := consult("b1"); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("first consult: want FailedPrecondition (no route), got %v", err)
	}
	err := consult("b2")
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted || ce.Meta().Get("Retry-After") == "" {
		t.Fatalf("second consult: want ResourceExhausted with Retry-After, got %v", err)
	}
	st, err := admin.GetStats(ctx, connect.NewRequest(&pb.GetStatsRequest{MerchantId: "m1"}))
	if err != nil || st.Msg.Stats.Consults != 0 {
		t.Fatalf("refused consults counted: %v %v", st, err)
	}
}

// TestSmallResponsesUncompressed: a caller that accepts gzip (as Go's HTTP
// transport does by default) gets small answers uncompressed — gzipping
// each one was 8% of a node's CPU under load — and large ones compressed.
func TestSmallResponsesUncompressed(t *testing.T) {
	n := startNode(t)
	base := "http://" + n.APIAddr()
	post := func(procedure, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+procedure, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport then leaves the body as sent
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: %s: %s", procedure, resp.Status, b)
		}
		return resp
	}
	small := post("/frontdesk.v1.AdminService/UpsertMerchant", `{"requestId":"r1","merchant":{"merchantId":"m1"}}`)
	if enc := small.Header.Get("Content-Encoding"); enc != "" {
		t.Fatalf("a small answer came with Content-Encoding %q; want none", enc)
	}
	for i := range 200 {
		post("/frontdesk.v1.AdminService/UpsertGroup", fmt.Sprintf(`{"requestId":"g%d","group":{"merchantId":"m1","groupId":"group-with-a-long-name-%03d","mode":"GROUP_MODE_PUSH"}}`, i, i))
	}
	large := post("/frontdesk.v1.AdminService/GetMerchant", `{"merchantId":"m1"}`)
	if enc := large.Header.Get("Content-Encoding"); enc != "gzip" {
		t.Fatalf("a large answer (200 groups) came with Content-Encoding %q; want gzip", enc)
	}
}

// TestShutdownEndsEventStreams: a node with an event stream open shuts
// down at once, and the stream ends UNAVAILABLE (so that a client resumes
// on another node). http.Server.Shutdown waits for open streams, and a
// stream waiting for events never ends by itself: before the node ended
// its streams, Shutdown ran until its context's deadline.
func TestShutdownEndsEventStreams(t *testing.T) {
	n := startNode(t)
	base := "http://" + n.APIAddr()
	ctx := context.Background()
	admin := frontdeskv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.UpsertMerchant(ctx, connect.NewRequest(&pb.UpsertMerchantRequest{RequestId: "s1",
		Merchant: &pb.UpsertMerchant{MerchantId: "m1"}})); err != nil {
		t.Fatal(err)
	}
	events := frontdeskv1connect.NewEventServiceClient(h2cClient(), base)
	stream, err := events.Watch(ctx, connect.NewRequest(&pb.WatchRequest{MerchantId: "m1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	// The merchant's event: the stream is open on the node, waiting for more.
	if !stream.Receive() {
		t.Fatalf("no event: %v", stream.Err())
	}

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown with an event stream open: %v", err)
	}
	for stream.Receive() {
	}
	if code := connect.CodeOf(stream.Err()); code != connect.CodeUnavailable {
		t.Fatalf("the event stream ended with %v (%v), want UNAVAILABLE", code, stream.Err())
	}
}
