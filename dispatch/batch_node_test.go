package dispatch_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/node/nodetest"
)

// batchRPCs sums frontdesk_rpc_requests_total for DispatchService.Batch
// over the nodes' /metrics.
func batchRPCs(t *testing.T, addrs []string) int {
	t.Helper()
	total := 0
	for _, a := range addrs {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "frontdesk_rpc_requests_total{") && strings.Contains(line, "DispatchService/Batch") {
				f := strings.Fields(line)
				v, err := strconv.ParseFloat(f[len(f)-1], 64)
				if err != nil {
					t.Fatalf("metric line %q: %v", line, err)
				}
				total += int(v)
			}
		}
		resp.Body.Close()
	}
	return total
}

// TestBatchingThreeNodes: three in-process nodes, a client with batching:
// concurrent consults and ends of merchants on every shard, bad calls
// among them, and a leadership transfer the client does not know about.
// Every call gets its own answer, the state is what the calls did, and
// the nodes served Batch RPCs.
func TestBatchingThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	c := nodetest.Start(t, 3, nodetest.Options{Shards: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.New(ctx, c.APIAddrs(), client.WithBatching(64), client.WithRetry(10*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// A merchant on each shard, each with 10 agents of limit 5.
	merchants := map[uint32]string{}
	for i := 0; len(merchants) < 8; i++ {
		m := fmt.Sprintf("shop-%d", i)
		if _, ok := merchants[cl.ShardOf(m)]; !ok {
			merchants[cl.ShardOf(m)] = m
		}
	}
	var ms []string
	for _, m := range merchants {
		ms = append(ms, m)
		must := func(_ *pb.Result, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("setup %s: %v", m, err)
			}
		}
		must(cl.UpsertMerchant(ctx, &pb.UpsertMerchant{MerchantId: m}))
		must(cl.UpsertGroup(ctx, &pb.UpsertGroup{MerchantId: m, GroupId: "g"}))
		must(cl.UpsertMerchant(ctx, &pb.UpsertMerchant{MerchantId: m, Settings: &pb.MerchantSettings{DefaultGroupId: "g"}}))
		for a := range 10 {
			aid := fmt.Sprintf("a%d", a)
			must(cl.UpsertAgent(ctx, &pb.UpsertAgent{MerchantId: m, AgentId: aid, Limit: 5, Groups: []*pb.AgentGroup{{GroupId: "g", Skill: 50}}}))
			must(cl.SetStatus(ctx, m, aid, pb.AgentStatus_AGENT_STATUS_ONLINE))
		}
	}

	// Move shard 0's leadership behind the client's back: its calls
	// batched to the old leader come back with LeaderHints to follow.
	sm, err := cl.ShardMap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var old string
	for _, si := range sm.ShardInfos {
		if si.Shard == 0 {
			old = si.LeaderId
		}
	}
	other, err := client.New(ctx, c.APIAddrs())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	newLeader, err := other.TransferLeadership(ctx, 0, "")
	if err != nil || newLeader == old {
		t.Fatalf("transfer shard 0's leadership away from %s: got %q, %v", old, newLeader, err)
	}

	before := batchRPCs(t, c.APIAddrs())
	const perMerchant = 40 // 8 merchants × 40 = 320 consults for 400 seats
	type consulted struct {
		merchant string
		res      *pb.Result
		err      error
	}
	out := make(chan consulted, len(ms)*perMerchant)
	var wg sync.WaitGroup
	for _, m := range ms {
		for i := range perMerchant {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := cl.Consult(ctx, &pb.Consult{MerchantId: m, BuyerId: fmt.Sprintf("buyer-%d", i)})
				out <- consulted{m, res, err}
			}()
		}
	}
	// Bad calls among them.
	badErrs := make([]error, 3)
	wg.Add(3)
	go func() {
		defer wg.Done()
		_, badErrs[0] = cl.Consult(ctx, &pb.Consult{MerchantId: ms[0]}) // no buyer
	}()
	go func() {
		defer wg.Done()
		_, badErrs[1] = cl.End(ctx, ms[1], "no-such-session", pb.EndReason_END_REASON_AGENT_ENDED)
	}()
	go func() {
		defer wg.Done()
		_, badErrs[2] = cl.Consult(ctx, &pb.Consult{MerchantId: "nobody-sells-here", BuyerId: "b"})
	}()
	wg.Wait()
	close(out)

	var e *client.Error
	if !errors.Is(badErrs[0], client.ErrInvalid) || !errors.As(badErrs[0], &e) || !strings.Contains(e.Field, "buyer_id") {
		t.Errorf("a consult without a buyer: want ErrInvalid on buyer_id, got %v", badErrs[0])
	}
	if !errors.Is(badErrs[1], client.ErrNotFound) || !errors.As(badErrs[1], &e) || !strings.Contains(e.Field, "session_id") {
		t.Errorf("ending an unknown session: want ErrNotFound on session_id, got %v", badErrs[1])
	}
	if !errors.Is(badErrs[2], client.ErrNotFound) || !errors.As(badErrs[2], &e) || !strings.Contains(e.Field, "merchant_id") {
		t.Errorf("a consult for an unknown merchant: want ErrNotFound on merchant_id, got %v", badErrs[2])
	}

	sessions := map[string]string{} // session → merchant
	for r := range out {
		if r.err != nil || r.res.GetOutcome() != pb.Outcome_OUTCOME_ASSIGNED {
			t.Fatalf("consult at %s: want ASSIGNED, got %v, %v", r.merchant, r.res, r.err)
		}
		if _, dup := sessions[r.res.SessionId]; dup {
			t.Fatalf("session %s given twice", r.res.SessionId)
		}
		sessions[r.res.SessionId] = r.merchant
	}

	// End them all at once; each is ENDED afterwards.
	endErrs := make(chan error, len(sessions))
	for s, m := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := cl.End(ctx, m, s, pb.EndReason_END_REASON_BUYER_LEFT)
			endErrs <- err
		}()
	}
	wg.Wait()
	close(endErrs)
	for err := range endErrs {
		if err != nil {
			t.Fatalf("end: %v", err)
		}
	}
	for s, m := range sessions {
		sess, err := cl.GetSession(ctx, m, s)
		if err != nil || sess.GetState() != pb.SessionState_SESSION_STATE_ENDED {
			t.Fatalf("session %s after its end: %v, %v", s, sess, err)
		}
	}
	if n := batchRPCs(t, c.APIAddrs()) - before; n == 0 {
		t.Fatalf("the nodes served no Batch RPC for %d concurrent calls", 2*len(sessions))
	} else {
		t.Logf("%d calls in %d Batch RPCs (and some unary)", 2*len(sessions)+3, n)
	}
}
