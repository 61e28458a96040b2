package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"hash/fnv"
	"slices"
	"testing"
	"time"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// TestForMerchantVectors pins the merchant → shard function to FNV-1a 32
// modulo the shard count, the server's contract.
func TestForMerchantVectors(t *testing.T) {
	// FNV-1a 32 reference values: offset basis 0x811c9dc5, prime 16777619.
	vectors := []struct {
		id    string
		sum   uint32
		mod16 uint32 // sum % 16, worked out by hand
	}{
		{"", 0x811c9dc5, 5},
		{"a", 0xe40c292c, 12},
		{"foobar", 0xbf9cf968, 8},
	}
	for _, v := range vectors {
		h := fnv.New32a()
		h.Write([]byte(v.id))
		if got := h.Sum32(); got != v.sum {
			t.Fatalf("fnv32a(%q) = %#x, want %#x (reference vector)", v.id, got, v.sum)
		}
		if got := ForMerchant(v.id, 16); got != v.mod16 {
			t.Errorf("ForMerchant(%q, 16) = %d, want %d", v.id, got, v.mod16)
		}
	}
	for _, id := range []string{"shop-1", "shop-2", "淘宝旗舰店", "merchant/with/slashes", "x"} {
		h := fnv.New32a()
		h.Write([]byte(id))
		for _, n := range []uint32{1, 3, 16, 64, 1000} {
			if got, want := ForMerchant(id, n), h.Sum32()%n; got != want {
				t.Errorf("ForMerchant(%q, %d) = %d, want %d", id, n, got, want)
			}
		}
	}
	if got := ForMerchant("a", 0); got != 0 {
		t.Errorf("ForMerchant with no shards = %d, want 0", got)
	}
}

// TestRoutesEveryCallToLeader calls every merchant RPC once and checks it
// reached only the leader of the merchant's shard, writes with a fresh
// 128-bit request id and reads without one.
func TestRoutesEveryCallToLeader(t *testing.T) {
	fc := newFakeCluster(t, 3, 16)
	for s := range fc.shards {
		fc.setLeader(s, int(s)%3)
	}
	c := newTestClient(t, fc)
	const m = "shop-42"
	leader := fc.leaderOf(ForMerchant(m, 16))
	if c.Shards() != 16 {
		t.Fatalf("Shards() = %d, want 16 from the shard map", c.Shards())
	}

	cases := []struct {
		procedure string
		write     bool
		call      func(ctx context.Context) error
	}{
		{frontdeskv1connect.DispatchServiceConsultProcedure, true, func(ctx context.Context) error {
			_, err := c.Consult(ctx, &pb.Consult{MerchantId: m, BuyerId: "b"})
			return err
		}},
		{frontdeskv1connect.DispatchServiceEscalateProcedure, true, func(ctx context.Context) error {
			_, err := c.Escalate(ctx, m, "s")
			return err
		}},
		{frontdeskv1connect.DispatchServiceTransferProcedure, true, func(ctx context.Context) error {
			_, err := c.Transfer(ctx, &pb.Transfer{MerchantId: m, SessionId: "s", ToGroupId: "g"})
			return err
		}},
		{frontdeskv1connect.DispatchServiceEndProcedure, true, func(ctx context.Context) error {
			_, err := c.End(ctx, m, "s", pb.EndReason_END_REASON_BUYER_LEFT)
			return err
		}},
		{frontdeskv1connect.DispatchServiceFirstReplyProcedure, true, func(ctx context.Context) error {
			_, err := c.FirstReply(ctx, m, "s")
			return err
		}},
		{frontdeskv1connect.DispatchServiceGetSessionProcedure, false, func(ctx context.Context) error {
			s, err := c.GetSession(ctx, m, "s")
			if err == nil && s.GetSessionId() != "s" {
				t.Errorf("GetSession returned session %q, want s", s.GetSessionId())
			}
			return err
		}},
		{frontdeskv1connect.DispatchServiceGetPositionProcedure, false, func(ctx context.Context) error {
			_, err := c.GetPosition(ctx, m, "b")
			return err
		}},
		{frontdeskv1connect.AgentServiceSetStatusProcedure, true, func(ctx context.Context) error {
			_, err := c.SetStatus(ctx, m, "a", pb.AgentStatus_AGENT_STATUS_ONLINE)
			return err
		}},
		{frontdeskv1connect.AgentServicePullNextProcedure, true, func(ctx context.Context) error {
			_, err := c.PullNext(ctx, m, "a")
			return err
		}},
		{frontdeskv1connect.AdminServiceUpsertMerchantProcedure, true, func(ctx context.Context) error {
			_, err := c.UpsertMerchant(ctx, &pb.UpsertMerchant{MerchantId: m})
			return err
		}},
		{frontdeskv1connect.AdminServiceDeleteMerchantProcedure, true, func(ctx context.Context) error {
			_, err := c.DeleteMerchant(ctx, m)
			return err
		}},
		{frontdeskv1connect.AdminServiceGetMerchantProcedure, false, func(ctx context.Context) error {
			r, err := c.GetMerchant(ctx, m)
			if err == nil && r.GetShard() != ForMerchant(m, 16) {
				t.Errorf("GetMerchant: shard %d, want %d", r.GetShard(), ForMerchant(m, 16))
			}
			return err
		}},
		{frontdeskv1connect.AdminServiceUpsertGroupProcedure, true, func(ctx context.Context) error {
			_, err := c.UpsertGroup(ctx, &pb.UpsertGroup{MerchantId: m, GroupId: "g"})
			return err
		}},
		{frontdeskv1connect.AdminServiceDeleteGroupProcedure, true, func(ctx context.Context) error {
			_, err := c.DeleteGroup(ctx, m, "g")
			return err
		}},
		{frontdeskv1connect.AdminServiceUpsertAgentProcedure, true, func(ctx context.Context) error {
			_, err := c.UpsertAgent(ctx, &pb.UpsertAgent{MerchantId: m, AgentId: "a"})
			return err
		}},
		{frontdeskv1connect.AdminServiceDeleteAgentProcedure, true, func(ctx context.Context) error {
			_, err := c.DeleteAgent(ctx, m, "a")
			return err
		}},
		{frontdeskv1connect.AdminServiceListAgentsProcedure, false, func(ctx context.Context) error {
			a, err := c.ListAgents(ctx, m)
			if err == nil && len(a) != 1 {
				t.Errorf("ListAgents returned %d agents, want 1", len(a))
			}
			return err
		}},
		{frontdeskv1connect.AdminServiceGetQueueProcedure, false, func(ctx context.Context) error {
			q, err := c.GetQueue(ctx, m, "g", 7)
			if err == nil && q.GetLength() != 7 {
				t.Errorf("GetQueue: length %d, want the echoed limit 7", q.GetLength())
			}
			return err
		}},
		{frontdeskv1connect.AdminServiceGetStatsProcedure, false, func(ctx context.Context) error {
			_, err := c.GetStats(ctx, m)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.procedure, func(t *testing.T) {
			fc.resetCalls()
			if err := tc.call(testCtx(t, 5*time.Second)); err != nil {
				t.Fatalf("call failed: %v", err)
			}
			calls := fc.allCalls()
			if len(calls) != 1 || calls[0].procedure != tc.procedure {
				t.Fatalf("calls = %+v, want exactly one %s", calls, tc.procedure)
			}
			got := calls[0]
			if got.node != leader {
				t.Errorf("sent to node %d, want the leader %d", got.node, leader)
			}
			if got.merchant != m {
				t.Errorf("merchant %q, want %q", got.merchant, m)
			}
			if tc.write {
				if b, err := hex.DecodeString(got.requestID); err != nil || len(b) != 16 {
					t.Errorf("request id %q, want 128 bits of hex", got.requestID)
				}
			} else if got.requestID != "" || got.stale {
				t.Errorf("read carried request id %q stale %v, want neither", got.requestID, got.stale)
			}
		})
	}
}

// TestRequestIDsAreFreshAndChosen: each call gets its own id unless the
// caller chose one.
func TestRequestIDsAreFreshAndChosen(t *testing.T) {
	fc := newFakeCluster(t, 1, 4)
	c := newTestClient(t, fc)
	ctx := testCtx(t, 5*time.Second)
	for range 3 {
		if _, err := c.End(ctx, "m", "s", pb.EndReason_END_REASON_AGENT_ENDED); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.End(WithRequestID(ctx, "mine"), "m", "s", pb.EndReason_END_REASON_AGENT_ENDED); err != nil {
		t.Fatal(err)
	}
	ids := requestIDs(fc.callsTo(frontdeskv1connect.DispatchServiceEndProcedure))
	if len(ids) != 4 || ids[3] != "mine" {
		t.Fatalf("request ids %q, want 3 random then \"mine\"", ids)
	}
	if ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
		t.Errorf("request ids %q repeat across calls", ids[:3])
	}
}

// TestStaleReads: Stale sets stale and lets a follower answer when the
// leader is gone.
func TestStaleReads(t *testing.T) {
	fc := newFakeCluster(t, 3, 4)
	c := newTestClient(t, fc)
	m := merchantOn(t, fc, 1)
	fc.nodes[0].down.Store(true) // the leader of every shard
	if _, err := c.GetSession(testCtx(t, 5*time.Second), m, "s", Stale()); err != nil {
		t.Fatalf("stale GetSession with the leader down: %v", err)
	}
	calls := fc.callsTo(frontdeskv1connect.DispatchServiceGetSessionProcedure)
	if len(calls) != 1 || calls[0].node == 0 || !calls[0].stale {
		t.Fatalf("served by %+v, want one stale read at a follower", calls)
	}
}

func TestListMerchantsAsksEveryShard(t *testing.T) {
	fc := newFakeCluster(t, 3, 8)
	for s := range fc.shards {
		fc.setLeader(s, int(s)%3)
	}
	c := newTestClient(t, fc)
	ids, err := c.ListMerchants(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 8 || !slices.IsSorted(ids) || ids[0] != "merchant-of-shard-00" {
		t.Fatalf("ListMerchants = %q, want one merchant per shard, sorted", ids)
	}
}

func TestClusterCalls(t *testing.T) {
	fc := newFakeCluster(t, 3, 4)
	c := newTestClient(t, fc)
	ctx := testCtx(t, 5*time.Second)
	m, err := c.ShardMap(ctx)
	if err != nil || m.GetShards() != 4 || len(m.GetNodes()) != 3 {
		t.Fatalf("ShardMap = %v, %v; want 4 shards and 3 nodes", m, err)
	}
	if st, err := c.Status(ctx); err != nil || st.GetNodeId() == "" {
		t.Fatalf("Status = %v, %v; want a node's answer", st, err)
	}
	// Shard 2's leader is node 0; the client sends the request there.
	leader, err := c.TransferLeadership(ctx, 2, "node2")
	if err != nil || leader != "node2" {
		t.Fatalf("TransferLeadership = %q, %v; want node2", leader, err)
	}
	calls := fc.callsTo(frontdeskv1connect.ClusterServiceTransferLeadershipProcedure)
	if len(calls) != 1 || calls[0].node != 0 {
		t.Fatalf("TransferLeadership went to %v, want node 0 once", nodesOf(calls))
	}
	// The next call to shard 2 finds the new leader.
	if _, err := c.PullNext(ctx, merchantOn(t, fc, 2), "a"); err != nil {
		t.Fatal(err)
	}
	pulls := fc.callsTo(frontdeskv1connect.AgentServicePullNextProcedure)
	if last := pulls[len(pulls)-1]; last.node != 2 {
		t.Errorf("after the transfer the call ended at node %d, want 2", last.node)
	}
}

func TestNewUsesAnyReachableAddress(t *testing.T) {
	fc := newFakeCluster(t, 1, 4)
	dead := newFakeCluster(t, 1, 4)
	deadAddr := dead.nodes[0].addr
	dead.nodes[0].srv.Close()

	ctx := testCtx(t, 5*time.Second)
	c, err := New(ctx, []string{deadAddr, "http://" + fc.nodes[0].addr + "/"}, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("New with one dead and one live address: %v", err)
	}
	c.Close()

	short := testCtx(t, 200*time.Millisecond)
	if _, err := New(short, []string{deadAddr}, WithRetry(5*time.Millisecond, 20*time.Millisecond)); err == nil {
		t.Fatal("New with only a dead address succeeded, want an error")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("New error %v, want it to match context.DeadlineExceeded", err)
	}
	if _, err := New(ctx, nil); err == nil {
		t.Error("New without addresses succeeded, want an error")
	}
}

// TestTLS: WithTLS talks https to the seeds and to the addresses learned
// from the shard map, over HTTP/2 (which gRPC needs).
func TestTLS(t *testing.T) {
	fc := newFakeClusterTLS(t, 2, 4, true)
	pool := x509.NewCertPool()
	pool.AddCert(fc.nodes[0].srv.Certificate())
	fc.setLeader(1, 1)
	c := newTestClient(t, fc, WithTLS(&tls.Config{RootCAs: pool}), WithProtocol(ProtocolGRPC))
	if _, err := c.Consult(testCtx(t, 5*time.Second), &pb.Consult{MerchantId: merchantOn(t, fc, 1), BuyerId: "b"}); err != nil {
		t.Fatalf("Consult over TLS: %v", err)
	}
	if calls := fc.callsTo(frontdeskv1connect.DispatchServiceConsultProcedure); len(calls) != 1 || calls[0].node != 1 {
		t.Fatalf("Consult went to %v, want node 1 once", nodesOf(calls))
	}
}

// A shard map, a leader hint and a forgotten leader each show at once in
// what calls read without the lock (the shard count, the target, the
// leader).
func TestRouteReadsSeeEveryChange(t *testing.T) {
	r, err := newRoutes("http", []string{"seed:1"})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.shardCount(); n != 0 {
		t.Fatalf("no shard map yet: %d shards", n)
	}
	m := &pb.GetShardMapResponse{Shards: 4, Nodes: []*pb.Node{{Id: "n1", ApiAddr: "a:1"}, {Id: "n2", ApiAddr: "b:1"}}}
	for s := range uint32(4) {
		m.ShardInfos = append(m.ShardInfos, &pb.ShardInfo{Shard: s, LeaderId: "n1", VoterIds: []string{"n1", "n2"}})
	}
	if err := r.apply(m); err != nil {
		t.Fatal(err)
	}
	if n, l := r.shardCount(), r.target(2, false, ""); n != 4 || l != "http://a:1" {
		t.Fatalf("after the map: %d shards, shard 2 to %q; want 4 and http://a:1", n, l)
	}
	r.setLeader(2, "http://b:1")
	if l := r.target(2, false, ""); l != "http://b:1" || r.leader(2) != "http://b:1" {
		t.Fatalf("after a hint naming b: shard 2 to %q, leader %q", l, r.leader(2))
	}
	r.forget(2, "http://b:1")
	if l := r.leader(2); l != "" {
		t.Fatalf("after forgetting b: leader %q, want none", l)
	}
	for range 4 { // with no leader, calls go to the known nodes in rotation
		if l := r.target(2, false, "http://a:1"); l == "http://a:1" {
			t.Fatalf("after forgetting b: a call that just failed on a goes to a again")
		}
	}
}
