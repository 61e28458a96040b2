package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/e2e/cluster"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/internal/testutil"
)

// setupShop creates merchant id with a push group "pre" (default) and a
// pull group "after" (page source after-sales), and `agents` agents with
// limit `limit`: even ones in "pre", odd ones in both.
func setupShop(t *testing.T, ctx context.Context, cl *client.Client, id string, agents int, limit uint32, s *pb.MerchantSettings) {
	t.Helper()
	must := func(_ *pb.Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("setup %s: %v", id, err)
		}
	}
	must(cl.UpsertMerchant(ctx, &pb.UpsertMerchant{MerchantId: id}))
	must(cl.UpsertGroup(ctx, &pb.UpsertGroup{MerchantId: id, GroupId: "pre"}))
	must(cl.UpsertGroup(ctx, &pb.UpsertGroup{MerchantId: id, GroupId: "after", Mode: pb.GroupMode_GROUP_MODE_PULL}))
	if s == nil {
		s = &pb.MerchantSettings{}
	}
	s.DefaultGroupId = "pre"
	s.Rules = []*pb.RoutingRule{{GroupId: "after", PageSource: pb.PageSource_PAGE_SOURCE_AFTER_SALES}}
	must(cl.UpsertMerchant(ctx, &pb.UpsertMerchant{MerchantId: id, Settings: s}))
	for i := 0; i < agents; i++ {
		groups := []*pb.AgentGroup{{GroupId: "pre", Skill: 50}}
		if i%2 == 1 {
			groups = append(groups, &pb.AgentGroup{GroupId: "after", Skill: 70})
		}
		aid := fmt.Sprintf("agent%02d", i)
		must(cl.UpsertAgent(ctx, &pb.UpsertAgent{MerchantId: id, AgentId: aid, Limit: limit, Groups: groups}))
		must(cl.SetStatus(ctx, id, aid, pb.AgentStatus_AGENT_STATUS_ONLINE))
	}
}

// TestThreeNodeFlow: three frontdeskd processes with --bootstrap-expect=3
// --shards=16; through the client a merchant with 2 groups and 10 agents
// (limit 5): consult, escalate, transfer, end, pull-next, tick, watch; then
// all three stopped and restarted with every session, queue and limit intact.
func TestThreeNodeFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three frontdeskd processes")
	}
	c := cluster.StartLocal(t, 3, cluster.Options{Shards: 16, Tick: 200 * time.Millisecond})
	c.WaitReady(60 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	checkGCTuned(t, c.Nodes[0].APIAddr)
	cl, err := client.New(ctx, c.APIAddrs(), client.WithRetry(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	setupShop(t, ctx, cl, "shop", 10, 5, &pb.MerchantSettings{QueueEnabled: true})
	setupShop(t, ctx, cl, "botshop", 2, 5, &pb.MerchantSettings{BotFirst: true, IdleTimeoutMs: 1500})

	w := cl.Watch(ctx, "shop", 0)
	defer w.Close()

	// 52 consults: 50 fill the ten agents (limit 5), two wait.
	sessions := map[string]*pb.Result{}
	for i := 0; i < 52; i++ {
		buyer := fmt.Sprintf("buyer%02d", i)
		r, err := cl.Consult(ctx, &pb.Consult{MerchantId: "shop", BuyerId: buyer, UserLevel: uint32(i % 3)})
		if err != nil {
			t.Fatalf("consult %s: %v", buyer, err)
		}
		sessions[buyer] = r
	}
	assigned, queued := 0, 0
	for _, r := range sessions {
		switch r.Outcome {
		case pb.Outcome_OUTCOME_ASSIGNED:
			assigned++
		case pb.Outcome_OUTCOME_QUEUED:
			queued++
		}
	}
	if assigned != 50 || queued != 2 {
		t.Fatalf("want 50 assigned and 2 queued, got %d and %d", assigned, queued)
	}
	checkLimits(t, ctx, cl, "shop")

	// Repeat consult returns the existing session.
	again, err := cl.Consult(ctx, &pb.Consult{MerchantId: "shop", BuyerId: "buyer00"})
	if err != nil || again.Outcome != pb.Outcome_OUTCOME_EXISTING || again.SessionId != sessions["buyer00"].SessionId {
		t.Fatalf("repeat consult: %v %v", again, err)
	}

	// End one: the head of the queue is pushed to the freed agent.
	s0 := sessions["buyer00"]
	if _, err := cl.End(ctx, "shop", s0.SessionId, pb.EndReason_END_REASON_AGENT_ENDED); err != nil {
		t.Fatal(err)
	}
	pos, err := cl.GetQueue(ctx, "shop", "pre", 10)
	if err != nil || pos.Length != 1 {
		t.Fatalf("queue after one end: %v %v", pos, err)
	}

	// Transfer to a group with no room: the buyer waits there (pull group).
	s1 := sessions["buyer01"]
	tr, err := cl.Transfer(ctx, &pb.Transfer{MerchantId: "shop", SessionId: s1.SessionId, ToGroupId: "after"})
	if err != nil || tr.Outcome != pb.Outcome_OUTCOME_QUEUED {
		t.Fatalf("transfer to the pull group: %v %v", tr, err)
	}
	// Transfer to a full agent is refused with a typed error.
	_, err = cl.Transfer(ctx, &pb.Transfer{MerchantId: "shop", SessionId: sessions["buyer02"].SessionId, ToAgentId: "agent05"})
	if !errors.Is(err, client.ErrLimit) {
		t.Fatalf("transfer to a full agent: want ErrLimit, got %v", err)
	}

	// Pull-next: an agent of the pull group (odd ids) other than the one who
	// transferred the buyer ends a session, then pulls the transferred buyer.
	var room *pb.Result
	for _, r := range sessions {
		odd := r.AgentId != "" && (r.AgentId[len(r.AgentId)-1]-'0')%2 == 1
		if r.Outcome == pb.Outcome_OUTCOME_ASSIGNED && odd && r.AgentId != s1.AgentId && r.SessionId != s0.SessionId {
			room = r
			break
		}
	}
	if room == nil {
		t.Fatal("no session of another pull-group agent to end")
	}
	if _, err := cl.End(ctx, "shop", room.SessionId, pb.EndReason_END_REASON_BUYER_LEFT); err != nil {
		t.Fatal(err)
	}
	pulled, err := cl.PullNext(ctx, "shop", room.AgentId)
	if err != nil || pulled.Outcome != pb.Outcome_OUTCOME_ASSIGNED || pulled.SessionId != tr.SessionId {
		t.Fatalf("pull-next by %s: want the transferred session %s, got %v %v", room.AgentId, tr.SessionId, pulled, err)
	}

	// Escalate on the bot-first merchant; an idle BOT session ends by tick.
	b1, err := cl.Consult(ctx, &pb.Consult{MerchantId: "botshop", BuyerId: "x"})
	if err != nil || b1.Outcome != pb.Outcome_OUTCOME_BOT {
		t.Fatalf("bot consult: %v %v", b1, err)
	}
	esc, err := cl.Escalate(ctx, "botshop", b1.SessionId)
	if err != nil || esc.Outcome != pb.Outcome_OUTCOME_ASSIGNED {
		t.Fatalf("escalate: %v %v", esc, err)
	}
	idle, err := cl.Consult(ctx, &pb.Consult{MerchantId: "botshop", BuyerId: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		s, err := cl.GetSession(ctx, "botshop", idle.SessionId)
		if err != nil {
			return err
		}
		if s.State != pb.SessionState_SESSION_STATE_ENDED || s.EndReason != pb.EndReason_END_REASON_IDLE_TIMEOUT {
			return fmt.Errorf("session %s is %v/%v, want ENDED by IDLE_TIMEOUT", s.SessionId, s.State, s.EndReason)
		}
		return nil
	})

	// Watch saw the assignments and the end, in seq order.
	var kinds = map[pb.EventKind]int{}
	var last uint64
	eventually(t, 15*time.Second, func() error {
		evs, err := w.Next()
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Seq <= last {
				t.Fatalf("event seq %d after %d", e.Seq, last)
			}
			last = e.Seq
			kinds[e.Kind]++
		}
		if kinds[pb.EventKind_EVENT_KIND_SESSION_ASSIGNED] < 50 || kinds[pb.EventKind_EVENT_KIND_SESSION_ENDED] < 2 {
			return fmt.Errorf("events so far: %v", kinds)
		}
		return nil
	})

	// Remember the state, stop every node, restart from the data dirs.
	before := readState(t, ctx, cl, "shop")
	cl.Close()
	for i := range c.Nodes {
		c.Stop(i)
	}
	for i := range c.Nodes {
		c.Start(i)
	}
	c.WaitReady(90 * time.Second)
	cl2, err := client.New(ctx, c.APIAddrs(), client.WithRetry(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	after := readState(t, ctx, cl2, "shop")
	if before != after {
		t.Fatalf("state changed across a full restart:\nbefore: %s\nafter:  %s", before, after)
	}
	for buyer, r := range sessions {
		s, err := cl2.GetSession(ctx, "shop", r.SessionId)
		if err != nil {
			t.Fatalf("session of %s after restart: %v", buyer, err)
		}
		if s.BuyerId != buyer {
			t.Fatalf("session %s belongs to %s, want %s", r.SessionId, s.BuyerId, buyer)
		}
	}
	checkLimits(t, ctx, cl2, "shop")
}

// readState renders a merchant's agents, queues and sessions' outcomes.
func readState(t *testing.T, ctx context.Context, cl *client.Client, id string) string {
	t.Helper()
	agents, err := cl.ListAgents(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, a := range agents {
		out += fmt.Sprintf("%s:%d/%d/%v ", a.Config.AgentId, a.Load, a.Limit, a.Status)
	}
	for _, g := range []string{"pre", "after"} {
		q, err := cl.GetQueue(ctx, id, g, 100)
		if err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintf("| %s:%d", g, q.Length)
		for _, s := range q.Sessions {
			out += " " + s.SessionId
		}
	}
	st, err := cl.GetStats(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	out += fmt.Sprintf(" | consults=%d assigned=%d queued=%d", st.Stats.Consults, st.Stats.Assigned, st.Stats.Queued)
	return out
}

// checkLimits fails if any agent holds more buyers than its limit.
func checkLimits(t *testing.T, ctx context.Context, cl *client.Client, id string) {
	t.Helper()
	agents, err := cl.ListAgents(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		if a.Load > a.Limit {
			t.Fatalf("agent %s holds %d buyers over its limit %d", a.Config.AgentId, a.Load, a.Limit)
		}
	}
}

// eventually polls f until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, d, 50*time.Millisecond, f)
}

// checkGCTuned checks that frontdeskd applied its --gc-headroom (on by
// default): the collector's target its /metrics reports is above the
// runtime's 100%, which only the tuner sets.
func checkGCTuned(t *testing.T, apiAddr string) {
	t.Helper()
	if v := os.Getenv("GOGC"); v != "" {
		t.Logf("GOGC=%s is set for the nodes: --gc-headroom is not applied, not checked", v)
		return
	}
	body := httpBody(t, "http://"+apiAddr+"/metrics")
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_gc_gogc_percent "); ok {
			if p, err := strconv.ParseFloat(v, 64); err != nil || p <= 100 {
				t.Fatalf("go_gc_gogc_percent %q: want above 100, set by --gc-headroom", v)
			}
			return
		}
	}
	t.Fatal("no go_gc_gogc_percent on /metrics")
}
