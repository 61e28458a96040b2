package fsm

// Tests of SPEC.md "Dispatch semantics" 1–9 and of input validation. Each
// TestSpecN_ function covers item N; helpers here are prefixed spec so they
// do not collide with the package's other tests.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// ---------------------------------------------------------------------------
// Helpers

// specState is the FSM's snapshot with the header's last_index cleared: the
// state a command may change. A command applied as a new log entry always
// advances the applied index, even when it fails or is a duplicate, so raw
// snapshot bytes cannot show that such a command "changed nothing".
func specState(t testing.TB, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	br := bufio.NewReader(bytes.NewReader(buf.Bytes()))
	rec := &pb.SnapshotRecord{}
	if err := protodelim.UnmarshalFrom(br, rec); err != nil || rec.GetHeader() == nil {
		t.Fatalf("snapshot does not start with a header: %v", err)
	}
	rec.GetHeader().LastIndex = 0
	var out bytes.Buffer
	if _, err := (protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}).MarshalTo(&out, rec); err != nil {
		t.Fatalf("marshal header: %v", err)
	}
	rest := new(bytes.Buffer)
	if _, err := rest.ReadFrom(br); err != nil {
		t.Fatalf("read snapshot: %v", err)
	}
	out.Write(rest.Bytes())
	return out.Bytes()
}

// specFailsCmd applies c as one entry and expects the sentinel want naming
// field, with the state (everything but the applied index) unchanged.
func specFailsCmd(h *harness, c *pb.Command, want error, field string) {
	h.t.Helper()
	before := specState(h.t, h.f)
	r := h.apply(c)[0]
	err := ResultError(r)
	if !errors.Is(err, want) {
		h.t.Fatalf("%v: got error %v, want %v", c.Body, err, want)
	}
	var fe *Error
	if !errors.As(err, &fe) || fe.Field != field {
		h.t.Fatalf("%v: error %v names field %q, want %q", c.Body, err, fe.Field, field)
	}
	if r.Outcome != pb.Outcome_OUTCOME_UNSPECIFIED || r.SessionId != "" {
		h.t.Fatalf("%v: failed result carries an outcome: %v", c.Body, r)
	}
	if after := specState(h.t, h.f); !bytes.Equal(before, after) {
		h.t.Fatalf("%v: failed command (%v) changed the state", c.Body, err)
	}
}

// specFails is h.fails: the body fails with the sentinel want naming field
// and changes nothing.
func specFails(h *harness, body any, want error, field string) {
	h.t.Helper()
	h.fails(body, want, field)
}

// specMerchant creates merchant m with push groups and then its settings
// (rules and the default group must name existing groups).
func specMerchant(h *harness, m string, s *pb.MerchantSettings, groups ...string) {
	h.t.Helper()
	h.merchant(m, nil)
	for _, g := range groups {
		h.group(m, g, pb.GroupMode_GROUP_MODE_PUSH)
	}
	h.merchant(m, s)
}

// specAgent upserts an agent and sets its status (ONLINE when 0).
func specAgent(h *harness, a *pb.UpsertAgent, status pb.AgentStatus) {
	h.t.Helper()
	h.ok(a)
	if status == pb.AgentStatus_AGENT_STATUS_UNSPECIFIED {
		status = pb.AgentStatus_AGENT_STATUS_ONLINE
	}
	h.ok(&pb.SetAgentStatus{MerchantId: a.MerchantId, AgentId: a.AgentId, Status: status})
}

// specAg is an agent of merchant m1 in group g with a skill, question-type
// skills, rating, weight and limit.
func specAg(id, g string, skill uint32, qskills map[string]uint32, rating, weight, limit uint32) *pb.UpsertAgent {
	ag := &pb.AgentGroup{GroupId: g, Skill: skill}
	for _, qt := range sortedKeys(qskills) {
		ag.QuestionSkills = append(ag.QuestionSkills, &pb.QuestionSkill{QuestionType: qt, Skill: qskills[qt]})
	}
	return &pb.UpsertAgent{MerchantId: "m1", AgentId: id, Groups: []*pb.AgentGroup{ag}, Rating: rating, Weight: weight, Limit: limit}
}

func specStatus(h *harness, m, a string, s pb.AgentStatus) {
	h.t.Helper()
	h.ok(&pb.SetAgentStatus{MerchantId: m, AgentId: a, Status: s})
}

func specEnd(h *harness, m, sid string, r pb.EndReason) *pb.Result {
	h.t.Helper()
	return h.ok(&pb.End{MerchantId: m, SessionId: sid, Reason: r})
}

func specSession(h *harness, m, sid string) *pb.Session {
	h.t.Helper()
	s, err := h.f.Session(m, sid)
	if err != nil {
		h.t.Fatalf("Session(%s, %s): %v", m, sid, err)
	}
	return s
}

// specWant is what a session or result should show; empty fields are
// checked too (an empty agent means "no agent").
type specWant struct {
	state  pb.SessionState
	agent  string
	group  string
	reason pb.EndReason
}

func (w specWant) String() string {
	return fmt.Sprintf("%s agent=%q group=%q reason=%s", w.state, w.agent, w.group, w.reason)
}

func specCheckSession(h *harness, m, sid string, w specWant) *pb.Session {
	h.t.Helper()
	s := specSession(h, m, sid)
	got := specWant{s.State, s.AgentId, s.GroupId, s.EndReason}
	if got != w {
		h.t.Fatalf("session %s: got %v, want %v", sid, got, w)
	}
	return s
}

// specCheckResult checks a session command's result: outcome, state, agent,
// group and (when QUEUED) position.
func specCheckResult(t testing.TB, r *pb.Result, outcome pb.Outcome, w specWant, pos uint32) {
	t.Helper()
	if err := ResultError(r); err != nil {
		t.Fatalf("unexpected error %v", err)
	}
	got := specWant{r.State, r.AgentId, r.GroupId, r.EndReason}
	if r.Outcome != outcome || got != w || r.Position != pos {
		t.Fatalf("result %v: got %s %v pos %d, want %s %v pos %d", r, r.Outcome, got, r.Position, outcome, w, pos)
	}
	if r.EstimatedWaitMs < 0 || (r.State != pb.SessionState_SESSION_STATE_QUEUED && r.EstimatedWaitMs != 0) {
		t.Fatalf("result %v: estimated wait %d for state %s", r, r.EstimatedWaitMs, r.State)
	}
}

func specAssigned(agent, group string) specWant {
	return specWant{state: pb.SessionState_SESSION_STATE_ASSIGNED, agent: agent, group: group}
}

func specQueued(group string) specWant {
	return specWant{state: pb.SessionState_SESSION_STATE_QUEUED, group: group}
}

func specEnded(agent, group string, r pb.EndReason) specWant {
	return specWant{state: pb.SessionState_SESSION_STATE_ENDED, agent: agent, group: group, reason: r}
}

func specInBot() specWant { return specWant{state: pb.SessionState_SESSION_STATE_BOT} }

// specLoads returns each agent's load.
func specLoads(h *harness, m string) map[string]uint32 {
	h.t.Helper()
	as, err := h.f.Agents(m)
	if err != nil {
		h.t.Fatalf("Agents(%s): %v", m, err)
	}
	out := map[string]uint32{}
	for _, a := range as {
		out[a.Config.AgentId] = a.Load
	}
	return out
}

// specLimitHeld checks the reception limit after a command, given the loads
// before it: an agent whose load grew is at most at its limit. (A lowered
// limit may leave an agent above it: lowering keeps sessions.) It returns
// the loads now.
func specLimitHeld(h *harness, m string, before map[string]uint32) map[string]uint32 {
	h.t.Helper()
	as, err := h.f.Agents(m)
	if err != nil {
		h.t.Fatalf("Agents(%s): %v", m, err)
	}
	out := map[string]uint32{}
	for _, a := range as {
		id := a.Config.AgentId
		out[id] = a.Load
		if a.Load > before[id] && a.Load > a.Limit {
			h.t.Fatalf("agent %s went from %d to %d buyers, over its limit %d", id, before[id], a.Load, a.Limit)
		}
	}
	return out
}

func specCheckLoads(h *harness, m string, want map[string]uint32) {
	h.t.Helper()
	got := specLoads(h, m)
	for a, n := range want {
		if got[a] != n {
			h.t.Fatalf("agent %s load %d, want %d (all loads %v)", a, got[a], n, got)
		}
	}
}

// specQueue returns the buyer ids waiting in a group's queue, in order.
func specQueue(h *harness, m, g string) []string {
	h.t.Helper()
	ss, n, err := h.f.Queue(m, g, 1000)
	if err != nil {
		h.t.Fatalf("Queue(%s, %s): %v", m, g, err)
	}
	if n != len(ss) {
		h.t.Fatalf("Queue(%s, %s): %d sessions listed, length %d", m, g, len(ss), n)
	}
	out := []string{}
	for _, s := range ss {
		out = append(out, s.BuyerId)
	}
	return out
}

func specEqual[T comparable](t testing.TB, what string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s:\n  got  %v\n  want %v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: item %d differs:\n  got  %v\n  want %v", what, i, got, want)
		}
	}
}

// specEventLog renders the events after seq `after` compactly:
// "SESSION_ASSIGNED <session> agent=<a> group=<g>[ reason=<r>][ comp]",
// "SURGE_CHANGED <level>", "AGENT_STATUS <agent> <status>" or the kind.
func specEventLog(h *harness, after uint64) []string {
	h.t.Helper()
	evs, _, _, err := h.f.Events("", after, 1<<30)
	if err != nil {
		h.t.Fatalf("Events: %v", err)
	}
	out := []string{}
	for _, e := range evs {
		out = append(out, specEventString(e))
	}
	return out
}

func specEventString(e *pb.Event) string {
	k := strings.TrimPrefix(e.Kind.String(), "EVENT_KIND_")
	switch e.Kind {
	case pb.EventKind_EVENT_KIND_SURGE_CHANGED:
		return k + " " + strings.TrimPrefix(e.Surge.String(), "SURGE_LEVEL_")
	case pb.EventKind_EVENT_KIND_AGENT_STATUS:
		return k + " " + e.AgentId + " " + strings.TrimPrefix(e.AgentStatus.String(), "AGENT_STATUS_")
	case pb.EventKind_EVENT_KIND_SESSION_BOT, pb.EventKind_EVENT_KIND_SESSION_QUEUED, pb.EventKind_EVENT_KIND_SESSION_ASSIGNED,
		pb.EventKind_EVENT_KIND_SESSION_ENDED, pb.EventKind_EVENT_KIND_SESSION_FIRST_REPLY,
		pb.EventKind_EVENT_KIND_SESSION_OVERFLOWED, pb.EventKind_EVENT_KIND_SESSION_REQUEUED:
		s := fmt.Sprintf("%s %s agent=%s group=%s", k, e.SessionId, e.AgentId, e.GroupId)
		if e.EndReason != pb.EndReason_END_REASON_UNSPECIFIED {
			s += " reason=" + strings.TrimPrefix(e.EndReason.String(), "END_REASON_")
		}
		if e.Compensation {
			s += " comp"
		}
		return s
	}
	return k
}

// specEv renders one session event the way specEventLog does.
func specEv(kind, sid, agent, group string, extra ...string) string {
	s := fmt.Sprintf("SESSION_%s %s agent=%s group=%s", kind, sid, agent, group)
	for _, x := range extra {
		s += " " + x
	}
	return s
}

// specBug skips with a BUG report: the behaviour the test demonstrates is
// wrong in a non-test file this suite may not edit. When the bug is fixed
// the check passes and the test runs on.
func specBug(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Skipf("BUG: "+format, args...)
}

func specLong(n int) string { return strings.Repeat("x", n) }

// ---------------------------------------------------------------------------
// 1. Routing

func TestSpec1_Routing(t *testing.T) {
	h := newHarness(t)
	groups := []string{"vip", "pre", "after", "cat", "region", "qt", "attr", "attrAny", "dflt"}
	specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "dflt", Rules: []*pb.RoutingRule{
		{GroupId: "vip", MinUserLevel: 5},
		{GroupId: "pre", PageSource: pb.PageSource_PAGE_SOURCE_PRE_SALES},
		{GroupId: "after", PageSource: pb.PageSource_PAGE_SOURCE_AFTER_SALES, Category: "shoes"},
		{GroupId: "cat", Category: "shoes"},
		{GroupId: "region", Region: "eu"},
		{GroupId: "qt", QuestionType: "refund"},
		{GroupId: "attr", AttributeKey: "channel", AttributeValue: "live"},
		{GroupId: "attrAny", AttributeKey: "coupon"},
	}}, groups...)
	for _, g := range groups {
		h.agent("m1", "ag-"+g, 100, g)
	}
	attr := func(kv ...string) []*pb.Attribute {
		var out []*pb.Attribute
		for i := 0; i < len(kv); i += 2 {
			out = append(out, &pb.Attribute{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	cases := []struct {
		name string
		c    *pb.Consult
		want string
	}{
		{"no attributes: default group", &pb.Consult{}, "dflt"},
		{"min user level, first rule wins over page source", &pb.Consult{UserLevel: 5, PageSource: pb.PageSource_PAGE_SOURCE_PRE_SALES}, "vip"},
		{"user level above min", &pb.Consult{UserLevel: 10, Region: "eu"}, "vip"},
		{"user level below min falls to page source", &pb.Consult{UserLevel: 4, PageSource: pb.PageSource_PAGE_SOURCE_PRE_SALES}, "pre"},
		{"page source and category both hold", &pb.Consult{PageSource: pb.PageSource_PAGE_SOURCE_AFTER_SALES, Category: "shoes"}, "after"},
		{"page source holds, category does not", &pb.Consult{PageSource: pb.PageSource_PAGE_SOURCE_AFTER_SALES, Category: "hats"}, "dflt"},
		{"category alone", &pb.Consult{PageSource: pb.PageSource_PAGE_SOURCE_PRODUCT, Category: "shoes"}, "cat"},
		{"region", &pb.Consult{Region: "eu"}, "region"},
		{"other region", &pb.Consult{Region: "us"}, "dflt"},
		{"region before question type", &pb.Consult{Region: "eu", QuestionType: "refund"}, "region"},
		{"question type", &pb.Consult{QuestionType: "refund"}, "qt"},
		{"other question type", &pb.Consult{QuestionType: "size"}, "dflt"},
		{"attribute key and value", &pb.Consult{Attributes: attr("x", "y", "channel", "live")}, "attr"},
		{"attribute value differs", &pb.Consult{Attributes: attr("channel", "shop")}, "dflt"},
		{"attribute key with any value", &pb.Consult{Attributes: attr("coupon", "")}, "attrAny"},
		{"value under another key does not match", &pb.Consult{Attributes: attr("live", "channel")}, "dflt"},
		{"order page", &pb.Consult{PageSource: pb.PageSource_PAGE_SOURCE_ORDER}, "dflt"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			c := proto.CloneOf(tc.c)
			c.MerchantId, c.BuyerId = "m1", "b"+strconv.Itoa(i)
			r := h.ok(c)
			specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("ag-"+tc.want, tc.want), 0)
			specCheckSession(h, "m1", r.SessionId, specAssigned("ag-"+tc.want, tc.want))
		})
	}
	h.t = t

	t.Run("no rule matches and no default group", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m2", &pb.MerchantSettings{QueueEnabled: true, Rules: []*pb.RoutingRule{
			{GroupId: "pre", PageSource: pb.PageSource_PAGE_SOURCE_PRE_SALES},
		}}, "pre")
		h.agent("m2", "a0", 5, "pre")
		h.advance(1000)
		specFails(h, &pb.Consult{MerchantId: "m2", BuyerId: "b1", PageSource: pb.PageSource_PAGE_SOURCE_ORDER}, ErrConflict, "merchant_id")
		if st, _ := h.f.Stats("m2"); st.Consults != 0 || st.Busy != 0 {
			t.Fatalf("a consult that could not be routed was counted: consults %d busy %d", st.Consults, st.Busy)
		}
		r := h.ok(&pb.Consult{MerchantId: "m2", BuyerId: "b1", PageSource: pb.PageSource_PAGE_SOURCE_PRE_SALES})
		specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "pre"), 0)
		// A merchant without groups routes nothing either.
		h.merchant("m3", nil)
		specFails(h, &pb.Consult{MerchantId: "m3", BuyerId: "b1"}, ErrConflict, "merchant_id")
		specFails(h, &pb.Consult{MerchantId: "nope", BuyerId: "b1"}, ErrNotFound, "merchant_id")
	})

	// The preferred agent is tried first when online and below its limit;
	// otherwise the group's best agent (best: skill 100 against 10) serves.
	prefCases := []struct {
		name    string
		prepare func(h *harness)
		pref    string
		want    string
		load    uint32 // of pref afterwards
	}{
		{"online below limit: preferred beats a better agent", nil, "pref", "pref", 1},
		{"away: skipped", func(h *harness) { specStatus(h, "m1", "pref", pb.AgentStatus_AGENT_STATUS_AWAY) }, "pref", "best", 0},
		{"offline: skipped", func(h *harness) { specStatus(h, "m1", "pref", pb.AgentStatus_AGENT_STATUS_OFFLINE) }, "pref", "best", 0},
		{"at limit: skipped", func(h *harness) {
			r := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: "filler", PreferredAgentId: "pref"})
			specCheckResult(h.t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("pref", "g1"), 0)
		}, "pref", "best", 1},
		{"unknown: ignored", nil, "ghost", "best", 0},
		{"none: best agent", nil, "", "best", 0},
	}
	for _, tc := range prefCases {
		t.Run("preferred agent "+tc.name, func(t *testing.T) {
			h := newHarness(t)
			specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1"}, "g1")
			specAgent(h, specAg("best", "g1", 100, nil, 500, 100, 5), 0)
			specAgent(h, specAg("pref", "g1", 10, nil, 0, 0, 1), 0)
			if tc.prepare != nil {
				tc.prepare(h)
			}
			r := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: "b1", PreferredAgentId: tc.pref})
			specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned(tc.want, "g1"), 0)
			specCheckLoads(h, "m1", map[string]uint32{"pref": tc.load})
		})
	}
}

// ---------------------------------------------------------------------------
// 2. Selection

// specWeights are the scoring weights with the playbook defaults.
type specWeights struct{ skill, headroom, rating, weight int64 }

func specEffective(w *pb.ScoringWeights) specWeights {
	d := specWeights{40, 20, 10, 10}
	if w == nil {
		return d
	}
	pick := func(v uint32, def int64) int64 {
		if v == 0 {
			return def
		}
		return int64(v)
	}
	return specWeights{pick(w.Skill, d.skill), pick(w.Headroom, d.headroom), pick(w.Rating, d.rating), pick(w.Weight, d.weight)}
}

// specModelAgent is the test's own model of an agent for brute-force selection.
type specModelAgent struct {
	id     string
	cfg    *pb.UpsertAgent
	online bool
	load   uint32
}

func (a *specModelAgent) limit() uint32 {
	if a.cfg.Limit == 0 {
		return DefaultLimit
	}
	return a.cfg.Limit
}

// specScore is the selection score: every part scaled to 0..1000 (skill for
// the question type, else the group skill, x10; free slots over the limit;
// rating x2; weight x10) and weighted.
func specScore(w specWeights, a *specModelAgent, group, qt string) (int64, bool) {
	var ag *pb.AgentGroup
	for _, g := range a.cfg.Groups {
		if g.GroupId == group {
			ag = g
		}
	}
	if ag == nil || !a.online || a.load >= a.limit() {
		return 0, false
	}
	skill := int64(ag.Skill)
	for _, q := range ag.QuestionSkills {
		if qt != "" && q.QuestionType == qt {
			skill = int64(q.Skill)
		}
	}
	headroom := int64(a.limit()-a.load) * 1000 / int64(a.limit())
	return w.skill*skill*10 + w.headroom*headroom + w.rating*int64(a.cfg.Rating)*2 + w.weight*int64(a.cfg.Weight)*10, true
}

// specBest is the best eligible agent of a group by brute force: highest
// score, ties to the smallest id; "" when none is eligible.
func specBest(w specWeights, agents []*specModelAgent, group, qt string) string {
	best, bestScore := "", int64(-1)
	for _, a := range agents {
		s, ok := specScore(w, a, group, qt)
		if ok && (s > bestScore || (s == bestScore && a.id < best)) {
			best, bestScore = a.id, s
		}
	}
	return best
}

func TestSpec2_Selection(t *testing.T) {
	type ag = *pb.UpsertAgent
	cases := []struct {
		name    string
		weights *pb.ScoringWeights
		agents  []ag
		away    []string
		qt      string
		want    string
	}{
		{"question skill beats group skill", nil, []ag{
			specAg("A", "g1", 90, map[string]uint32{"refund": 10}, 0, 0, 5),
			specAg("B", "g1", 50, map[string]uint32{"refund": 80}, 0, 0, 5),
		}, nil, "refund", "B"},
		{"group skill for another question type", nil, []ag{
			specAg("A", "g1", 90, map[string]uint32{"refund": 10}, 0, 0, 5),
			specAg("B", "g1", 50, map[string]uint32{"refund": 80}, 0, 0, 5),
		}, nil, "size", "A"},
		{"group skill without a question type", nil, []ag{
			specAg("A", "g1", 90, map[string]uint32{"refund": 10}, 0, 0, 5),
			specAg("B", "g1", 50, map[string]uint32{"refund": 80}, 0, 0, 5),
		}, nil, "", "A"},
		{"question skill of zero counts as zero", nil, []ag{
			specAg("A", "g1", 100, map[string]uint32{"refund": 0}, 0, 0, 5),
			specAg("B", "g1", 10, nil, 0, 0, 5),
		}, nil, "refund", "B"},
		{"skill 0.4 beats rating 0.1", nil, []ag{
			specAg("A", "g1", 100, nil, 0, 0, 5),
			specAg("B", "g1", 0, nil, 500, 0, 5),
		}, nil, "", "A"},
		{"rating breaks equal skill", nil, []ag{
			specAg("A", "g1", 50, nil, 100, 0, 5),
			specAg("B", "g1", 50, nil, 400, 0, 5),
		}, nil, "", "B"},
		{"weight breaks equal skill and rating", nil, []ag{
			specAg("A", "g1", 50, nil, 300, 0, 5),
			specAg("B", "g1", 50, nil, 300, 100, 5),
		}, nil, "", "B"},
		{"rating x0.1 equals weight x0.1 at full scale: tie to id", nil, []ag{
			specAg("B", "g1", 50, nil, 500, 0, 5),
			specAg("A", "g1", 50, nil, 0, 100, 5),
		}, nil, "", "A"},
		{"tie breaks by smallest id", nil, []ag{
			specAg("c", "g1", 50, nil, 100, 10, 5),
			specAg("a10", "g1", 50, nil, 100, 10, 5),
			specAg("a9", "g1", 50, nil, 100, 10, 5),
		}, nil, "", "a10"},
		{"away agent is not selected", nil, []ag{
			specAg("A", "g1", 100, nil, 500, 100, 5),
			specAg("B", "g1", 0, nil, 0, 0, 5),
		}, []string{"A"}, "", "B"},
		{"custom weights: rating outweighs skill", &pb.ScoringWeights{Skill: 1, Rating: 1000}, []ag{
			specAg("A", "g1", 100, nil, 0, 0, 5),
			specAg("B", "g1", 0, nil, 500, 0, 5),
		}, nil, "", "B"},
		{"custom weights: weight outweighs skill", &pb.ScoringWeights{Skill: 1, Weight: 500}, []ag{
			specAg("A", "g1", 100, nil, 0, 0, 5),
			specAg("B", "g1", 0, nil, 0, 50, 5),
		}, nil, "", "B"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", Weights: tc.weights}, "g1")
			var model []*specModelAgent
			for _, a := range tc.agents {
				st := pb.AgentStatus_AGENT_STATUS_ONLINE
				for _, id := range tc.away {
					if id == a.AgentId {
						st = pb.AgentStatus_AGENT_STATUS_AWAY
					}
				}
				specAgent(h, a, st)
				model = append(model, &specModelAgent{id: a.AgentId, cfg: a, online: st == pb.AgentStatus_AGENT_STATUS_ONLINE})
			}
			if brute := specBest(specEffective(tc.weights), model, "g1", tc.qt); brute != tc.want {
				t.Fatalf("test case is wrong: the score formula picks %q, the case wants %q", brute, tc.want)
			}
			r := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: "b1", QuestionType: tc.qt})
			specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned(tc.want, "g1"), 0)
		})
	}

	t.Run("custom weights change the choice of the same agents", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1"}, "g1")
		specAgent(h, specAg("A", "g1", 100, nil, 0, 0, 5), 0)
		specAgent(h, specAg("B", "g1", 0, nil, 500, 0, 5), 0)
		r := h.consult("m1", "b1")
		specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("A", "g1"), 0)
		specEnd(h, "m1", r.SessionId, pb.EndReason_END_REASON_AGENT_ENDED)
		// Changing the weights re-scores every agent of every group.
		h.merchant("m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", Weights: &pb.ScoringWeights{Skill: 1, Rating: 1000}})
		r = h.consult("m1", "b2")
		specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("B", "g1"), 0)
	})

	t.Run("headroom spreads load, ties by id", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1"}, "g1")
		specAgent(h, specAg("a0", "g1", 50, nil, 0, 0, 2), 0)
		specAgent(h, specAg("a1", "g1", 50, nil, 0, 0, 2), 0)
		specAgent(h, specAg("a2", "g1", 50, nil, 0, 0, 4), 0)
		// loads (0,0,0) headroom 1000/1000/1000 -> a0; (1,0,0) 500/1000/1000 -> a1;
		// (1,1,0) -> a2; (1,1,1) 500/500/750 -> a2; (1,1,2) all 500 -> a0;
		// (2,1,2) -> a1; then only a2 has room.
		want := []string{"a0", "a1", "a2", "a2", "a0", "a1", "a2", "a2"}
		for i, w := range want {
			r := h.consult("m1", "b"+strconv.Itoa(i))
			specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned(w, "g1"), 0)
		}
		r := h.consult("m1", "b-last")
		specCheckResult(t, r, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), 1)
		specCheckLoads(h, "m1", map[string]uint32{"a0": 2, "a1": 2, "a2": 4})
	})

	for _, w := range []*pb.ScoringWeights{nil, {Skill: 5, Headroom: 300, Rating: 1, Weight: 50}} {
		t.Run(fmt.Sprintf("1000 agents match brute force, weights %v", w), func(t *testing.T) {
			specThousandAgents(t, w)
		})
	}
}

// specThousandAgents runs 1,000 agents in two groups through consults, ends,
// status changes and re-configurations, and checks every assignment against
// the brute-force best agent of the score formula.
func specThousandAgents(t *testing.T, weights *pb.ScoringWeights) {
	h := newHarness(t)
	rng := rand.New(rand.NewPCG(2024, 11))
	specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", Weights: weights,
		Rules: []*pb.RoutingRule{{GroupId: "g2", Category: "vip"}}}, "g1", "g2")
	w := specEffective(weights)
	qts := []string{"", "refund", "size", "ship"}
	// Few distinct values, so equal scores (and the id tie-break) are common.
	pickU := func(vs ...uint32) uint32 { return vs[rng.IntN(len(vs))] }
	config := func(id string, i int) *pb.UpsertAgent {
		a := &pb.UpsertAgent{MerchantId: "m1", AgentId: id, Rating: pickU(0, 250, 500), Weight: pickU(0, 50, 100), Limit: pickU(1, 2, 4, 0)}
		groups := []string{"g1"}
		if i%4 == 0 {
			groups = append(groups, "g2")
		}
		for _, g := range groups {
			ag := &pb.AgentGroup{GroupId: g, Skill: pickU(0, 50, 100)}
			for _, qt := range qts[1:] {
				if rng.IntN(3) == 0 {
					ag.QuestionSkills = append(ag.QuestionSkills, &pb.QuestionSkill{QuestionType: qt, Skill: pickU(0, 30, 60, 100)})
				}
			}
			a.Groups = append(a.Groups, ag)
		}
		return a
	}
	var agents []*specModelAgent
	byID := map[string]*specModelAgent{}
	for i := 0; i < 1000; i++ {
		id := "a" + strconv.Itoa(i)
		cfg := config(id, i)
		online := rng.IntN(10) != 0
		st := pb.AgentStatus_AGENT_STATUS_AWAY
		if online {
			st = pb.AgentStatus_AGENT_STATUS_ONLINE
		}
		specAgent(h, cfg, st)
		a := &specModelAgent{id: id, cfg: cfg, online: online}
		agents = append(agents, a)
		byID[id] = a
	}
	type active struct{ sid, agent string }
	var sessions []active
	consults := 0
	for step := 0; step < 700; step++ {
		h.advance(100)
		switch p := rng.IntN(100); {
		case p < 65:
			consults++
			qt := qts[rng.IntN(len(qts))]
			group, cat := "g1", ""
			if rng.IntN(4) == 0 {
				group, cat = "g2", "vip"
			}
			want := specBest(w, agents, group, qt)
			if want == "" {
				t.Fatalf("step %d: no eligible agent in %s; the test expects capacity to spare", step, group)
			}
			r := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: "b" + strconv.Itoa(step), QuestionType: qt, Category: cat})
			if r.Outcome != pb.Outcome_OUTCOME_ASSIGNED || r.AgentId != want || r.GroupId != group {
				ws, _ := specScore(w, byID[want], group, qt)
				gs := int64(-1)
				if a := byID[r.AgentId]; a != nil {
					gs, _ = specScore(w, a, group, qt)
				}
				t.Fatalf("step %d: consult qt %q in %s went to %q (%s, score %d); brute force says %q (score %d)",
					step, qt, group, r.AgentId, r.Outcome, gs, want, ws)
			}
			byID[want].load++
			sessions = append(sessions, active{r.SessionId, want})
		case p < 80 && len(sessions) > 0:
			i := rng.IntN(len(sessions))
			s := sessions[i]
			sessions = append(sessions[:i], sessions[i+1:]...)
			specEnd(h, "m1", s.sid, pb.EndReason_END_REASON_AGENT_ENDED)
			byID[s.agent].load--
		case p < 92:
			a := agents[rng.IntN(len(agents))]
			a.online = !a.online
			st := pb.AgentStatus_AGENT_STATUS_AWAY
			if a.online {
				st = pb.AgentStatus_AGENT_STATUS_ONLINE
			}
			specStatus(h, "m1", a.id, st)
		default:
			i := rng.IntN(len(agents))
			a := agents[i]
			a.cfg = config(a.id, i)
			h.ok(a.cfg)
		}
	}
	if consults < 300 {
		t.Fatalf("only %d consults: the random mix is off", consults)
	}
	loads := specLoads(h, "m1")
	for _, a := range agents {
		if loads[a.id] != a.load {
			t.Fatalf("agent %s load %d, model says %d", a.id, loads[a.id], a.load)
		}
	}
}

// ---------------------------------------------------------------------------
// 3. Reception limit

func TestSpec3_Limit(t *testing.T) {
	t.Run("consult storm never exceeds a limit", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1"}, "g1")
		limits := map[string]uint32{"a0": 1, "a1": 2, "a2": 3}
		for _, id := range sortedKeys(limits) {
			h.agent("m1", id, limits[id], "g1")
		}
		// 40 consults in one log entry, then 20 more one by one.
		var cmds []*pb.Command
		for i := 0; i < 40; i++ {
			cmds = append(cmds, h.cmd(&pb.Consult{MerchantId: "m1", BuyerId: "s" + strconv.Itoa(i)}))
		}
		results := h.apply(cmds...)
		for i := 0; i < 20; i++ {
			results = append(results, h.consult("m1", "t"+strconv.Itoa(i)))
		}
		perAgent := map[string]uint32{}
		var pos uint32
		for i, r := range results {
			switch r.Outcome {
			case pb.Outcome_OUTCOME_ASSIGNED:
				perAgent[r.AgentId]++
			case pb.Outcome_OUTCOME_QUEUED:
				pos++
				if r.Position != pos {
					t.Fatalf("consult %d queued at position %d, want %d", i, r.Position, pos)
				}
			default:
				t.Fatalf("consult %d: outcome %s", i, r.Outcome)
			}
		}
		for id, l := range limits {
			if perAgent[id] != l {
				t.Fatalf("agent %s got %d buyers, want exactly its limit %d (%v)", id, perAgent[id], l, perAgent)
			}
		}
		if pos != 60-6 {
			t.Fatalf("%d queued, want 54", pos)
		}
		specCheckLoads(h, "m1", limits)
		// A storm of status flips, ends and limit changes: after every
		// command no agent is above its limit (specLoads checks).
		rng := rand.New(rand.NewPCG(3, 4))
		live := []string{}
		for _, r := range results {
			live = append(live, r.SessionId)
		}
		loads := specLoads(h, "m1")
		for step := 0; step < 300; step++ {
			id := "a" + strconv.Itoa(rng.IntN(3))
			switch rng.IntN(4) {
			case 0:
				specStatus(h, "m1", id, []pb.AgentStatus{pb.AgentStatus_AGENT_STATUS_ONLINE, pb.AgentStatus_AGENT_STATUS_AWAY, pb.AgentStatus_AGENT_STATUS_OFFLINE}[rng.IntN(3)])
			case 1:
				h.ok(&pb.UpsertAgent{MerchantId: "m1", AgentId: id, Limit: uint32(1 + rng.IntN(4)), Groups: []*pb.AgentGroup{{GroupId: "g1", Skill: 50}}})
			case 2:
				if len(live) > 0 {
					i := rng.IntN(len(live))
					h.do(&pb.End{MerchantId: "m1", SessionId: live[i], Reason: pb.EndReason_END_REASON_BUYER_LEFT})
					live = append(live[:i], live[i+1:]...)
				}
			default:
				live = append(live, h.consult("m1", "u"+strconv.Itoa(step)).SessionId)
			}
			loads = specLimitHeld(h, "m1", loads)
		}
	})

	t.Run("transfer to a full or unavailable agent", func(t *testing.T) {
		h := newHarness(t)
		h.basic(2, 1)
		h.agent("m1", "a2", 1, "g1")
		r0 := h.consult("m1", "b0")
		r1 := h.consult("m1", "b1")
		specCheckResult(t, r0, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g1"), 0)
		specCheckResult(t, r1, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a1", "g1"), 0)
		specStatus(h, "m1", "a2", pb.AgentStatus_AGENT_STATUS_AWAY)
		h.advance(1000)
		specFails(h, &pb.Transfer{MerchantId: "m1", SessionId: r0.SessionId, ToAgentId: "a1"}, ErrLimit, "to_agent_id")
		specFails(h, &pb.Transfer{MerchantId: "m1", SessionId: r0.SessionId, ToAgentId: "a2"}, ErrLimit, "to_agent_id")
		specStatus(h, "m1", "a2", pb.AgentStatus_AGENT_STATUS_OFFLINE)
		specFails(h, &pb.Transfer{MerchantId: "m1", SessionId: r0.SessionId, ToAgentId: "a2"}, ErrLimit, "to_agent_id")
		specCheckSession(h, "m1", r0.SessionId, specAssigned("a0", "g1"))
		specCheckLoads(h, "m1", map[string]uint32{"a0": 1, "a1": 1, "a2": 0})
	})

	t.Run("pull-next at limit or not online", func(t *testing.T) {
		h := newHarness(t)
		h.merchant("m1", nil)
		h.group("m1", "p", pb.GroupMode_GROUP_MODE_PULL)
		h.merchant("m1", &pb.MerchantSettings{DefaultGroupId: "p"})
		h.agent("m1", "a0", 1, "p")
		h.consult("m1", "b0")
		h.consult("m1", "b1")
		r := h.ok(&pb.PullNext{MerchantId: "m1", AgentId: "a0"})
		specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "p"), 0)
		h.advance(1000)
		specFails(h, &pb.PullNext{MerchantId: "m1", AgentId: "a0"}, ErrLimit, "agent_id")
		specEnd(h, "m1", r.SessionId, pb.EndReason_END_REASON_AGENT_ENDED)
		specStatus(h, "m1", "a0", pb.AgentStatus_AGENT_STATUS_AWAY)
		specFails(h, &pb.PullNext{MerchantId: "m1", AgentId: "a0"}, ErrLimit, "agent_id")
		specFails(h, &pb.PullNext{MerchantId: "m1", AgentId: "ghost"}, ErrNotFound, "agent_id")
	})

	lower := []struct {
		name  string
		lower func(h *harness)
		raise func(h *harness)
	}{
		{"agent limit", func(h *harness) {
			h.ok(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a0", Limit: 1, Groups: []*pb.AgentGroup{{GroupId: "g1", Skill: 50}}})
		}, func(h *harness) {
			h.ok(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a0", Limit: 3, Groups: []*pb.AgentGroup{{GroupId: "g1", Skill: 50}}})
		}},
		{"merchant default limit", func(h *harness) {
			h.merchant("m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", DefaultLimit: 1})
		}, func(h *harness) {
			h.merchant("m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", DefaultLimit: 3})
		}},
	}
	for _, tc := range lower {
		t.Run("lowering the "+tc.name+" keeps sessions and stops new assignments", func(t *testing.T) {
			h := newHarness(t)
			specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", DefaultLimit: 3}, "g1")
			h.agent("m1", "a0", 0, "g1") // limit 0: the merchant default, 3
			var ids []string
			for i := 0; i < 3; i++ {
				r := h.consult("m1", "b"+strconv.Itoa(i))
				specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g1"), 0)
				ids = append(ids, r.SessionId)
			}
			tc.lower(h)
			// The lowered limit and the kept sessions survive a failover:
			// continue on a replica restored from a snapshot.
			h.f = specRestore(t, h.f)
			as, _ := h.f.Agents("m1")
			if as[0].Limit != 1 || as[0].Load != 3 {
				t.Fatalf("after lowering: limit %d load %d, want 1 and 3", as[0].Limit, as[0].Load)
			}
			for _, id := range ids {
				specCheckSession(h, "m1", id, specAssigned("a0", "g1"))
			}
			q := h.consult("m1", "q1")
			specCheckResult(t, q, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), 1)
			qp := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: "q2", PreferredAgentId: "a0"})
			specCheckResult(t, qp, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), 2)
			// Loads 3 -> 2 -> 1: still not below the new limit of 1.
			specEnd(h, "m1", ids[0], pb.EndReason_END_REASON_AGENT_ENDED)
			specEnd(h, "m1", ids[1], pb.EndReason_END_REASON_AGENT_ENDED)
			specCheckSession(h, "m1", q.SessionId, specQueued("g1"))
			specCheckLoads(h, "m1", map[string]uint32{"a0": 1})
			// Load 0 < 1: the head of the queue gets the one slot.
			specEnd(h, "m1", ids[2], pb.EndReason_END_REASON_AGENT_ENDED)
			specCheckSession(h, "m1", q.SessionId, specAssigned("a0", "g1"))
			specCheckSession(h, "m1", qp.SessionId, specQueued("g1"))
			specCheckLoads(h, "m1", map[string]uint32{"a0": 1})
			// Raising it again lets the queue flow.
			tc.raise(h)
			specCheckSession(h, "m1", qp.SessionId, specAssigned("a0", "g1"))
			specCheckLoads(h, "m1", map[string]uint32{"a0": 2})
		})
	}
}

// ---------------------------------------------------------------------------
// 4. Queue

// specQueueKey is the queue priority of state.go's queueKey: arrival time
// moved earlier by user level x user_level weight x aging_ms / 10.
func specQueueKey(now int64, level uint32, w *pb.ScoringWeights) int64 {
	ul, aging := int64(30), int64(1000)
	if w != nil && w.UserLevel != 0 {
		ul = int64(w.UserLevel)
	}
	if w != nil && w.AgingMs != 0 {
		aging = int64(w.AgingMs)
	}
	return now - int64(level)*ul*aging/10
}

func TestSpec4_Queue(t *testing.T) {
	t.Run("position and estimated wait", func(t *testing.T) {
		h := newHarness(t)
		h.basic(1, 1)
		r0 := h.consult("m1", "b0")
		specCheckResult(t, r0, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g1"), 0)
		mark := h.f.LastEventSeq()
		var qs []*pb.Result
		for i := 1; i <= 3; i++ {
			r := h.consult("m1", "b"+strconv.Itoa(i))
			specCheckResult(t, r, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), uint32(i))
			// No session handled yet: a mean handle time of 60 s over a
			// capacity of one slot.
			if want := int64(i) * 60_000; r.EstimatedWaitMs != want {
				t.Fatalf("position %d: estimated wait %d, want %d", i, r.EstimatedWaitMs, want)
			}
			qs = append(qs, r)
		}
		specEqual(t, "events", specEventLog(h, mark), []string{
			specEv("QUEUED", qs[0].SessionId, "", "g1"), specEv("QUEUED", qs[1].SessionId, "", "g1"), specEv("QUEUED", qs[2].SessionId, "", "g1"),
		})
		for i, q := range qs {
			b, err := h.f.BuyerSession("m1", "b"+strconv.Itoa(i+1))
			if err != nil || !proto.Equal(b, q) {
				t.Fatalf("BuyerSession b%d = %v, %v; want the consult's result %v", i+1, b, err, q)
			}
		}
		// b0 is handled for 10 s; b1 is pushed to a0, b2 and b3 move up
		// and the estimate uses the mean handle time.
		h.advance(10_000)
		specEnd(h, "m1", r0.SessionId, pb.EndReason_END_REASON_AGENT_ENDED)
		specCheckSession(h, "m1", qs[0].SessionId, specAssigned("a0", "g1"))
		for i, want := range []struct {
			pos  uint32
			wait int64
		}{{1, 10_000}, {2, 20_000}} {
			b, err := h.f.BuyerSession("m1", "b"+strconv.Itoa(i+2))
			if err != nil {
				t.Fatal(err)
			}
			if b.Outcome != pb.Outcome_OUTCOME_QUEUED || b.Position != want.pos || b.EstimatedWaitMs != want.wait {
				t.Fatalf("BuyerSession b%d: %v, want QUEUED position %d wait %d", i+2, b, want.pos, want.wait)
			}
		}
		if b, err := h.f.BuyerSession("m1", "b1"); err != nil || b.Position != 0 || b.State != pb.SessionState_SESSION_STATE_ASSIGNED {
			t.Fatalf("BuyerSession b1 = %v, %v; want ASSIGNED without a position", b, err)
		}
		if _, err := h.f.BuyerSession("m1", "b0"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("BuyerSession of an ended buyer: %v, want ErrNotFound", err)
		}
	})

	type arrival struct {
		buyer string
		after int64 // ms after the previous arrival
		level uint32
	}
	orderCases := []struct {
		name     string
		weights  *pb.ScoringWeights
		arrivals []arrival
		want     []string
	}{
		{"same level: arrival order", nil, []arrival{{"x", 0, 2}, {"y", 10, 2}, {"z", 10, 2}}, []string{"x", "y", "z"}},
		{"a VIP arriving later overtakes", nil, []arrival{{"x", 0, 0}, {"vip", 1000, 3}}, []string{"vip", "x"}},
		// level 1 is worth 1 x 30 x 1000 / 10 = 3000 ms of waiting.
		{"level 1 just inside its head start overtakes", nil, []arrival{{"x", 0, 0}, {"vip", 2999, 1}}, []string{"vip", "x"}},
		{"equal priority: arrival order", nil, []arrival{{"x", 0, 0}, {"vip", 3000, 1}}, []string{"x", "vip"}},
		{"a buyer who waited long enough is not overtaken", nil, []arrival{{"x", 0, 0}, {"vip", 3001, 1}}, []string{"x", "vip"}},
		{"level 10 is worth 30 s", nil, []arrival{{"x", 0, 0}, {"y", 29_000, 0}, {"vip", 1_001, 10}}, []string{"x", "vip", "y"}},
		{"custom aging: one level worth 100 ms", &pb.ScoringWeights{UserLevel: 10, AgingMs: 100},
			[]arrival{{"x", 0, 0}, {"v5", 400, 5}, {"v5late", 200, 5}}, []string{"v5", "x", "v5late"}},
		{"custom user level weight: one level worth 9 s", &pb.ScoringWeights{UserLevel: 90},
			[]arrival{{"x", 0, 0}, {"y", 8000, 0}, {"v1", 1000, 1}, {"v2", 10_000, 2}}, []string{"x", "v1", "v2", "y"}},
		{"mixed", nil, []arrival{{"a", 0, 0}, {"b", 500, 2}, {"c", 500, 5}, {"d", 500, 0}, {"e", 7000, 3}},
			[]string{"c", "b", "e", "a", "d"}},
	}
	for _, tc := range orderCases {
		t.Run("order: "+tc.name, func(t *testing.T) {
			h := newHarness(t)
			specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", Weights: tc.weights}, "g1")
			h.agent("m1", "a0", 1, "g1")
			h.consult("m1", "busy")
			type key struct {
				buyer string
				k     int64
				i     int
			}
			var keys []key
			for i, a := range tc.arrivals {
				h.advance(a.after)
				r := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: a.buyer, UserLevel: a.level})
				if r.Outcome != pb.Outcome_OUTCOME_QUEUED {
					t.Fatalf("%s: %s, want QUEUED", a.buyer, r.Outcome)
				}
				if s := specSession(h, "m1", r.SessionId); s.QueueKey != specQueueKey(h.now, a.level, tc.weights) {
					t.Fatalf("%s: queue key %d, want %d", a.buyer, s.QueueKey, specQueueKey(h.now, a.level, tc.weights))
				}
				keys = append(keys, key{a.buyer, specQueueKey(h.now, a.level, tc.weights), i})
			}
			sort.Slice(keys, func(i, j int) bool {
				if keys[i].k != keys[j].k {
					return keys[i].k < keys[j].k
				}
				return keys[i].i < keys[j].i
			})
			var byFormula []string
			for _, k := range keys {
				byFormula = append(byFormula, k.buyer)
			}
			specEqual(t, "test case against the queueKey formula", byFormula, tc.want)
			specEqual(t, "queue order", specQueue(h, "m1", "g1"), tc.want)
			for i, b := range tc.want {
				r, err := h.f.BuyerSession("m1", b)
				if err != nil || r.Position != uint32(i+1) {
					t.Fatalf("BuyerSession(%s) = %v, %v; want position %d", b, r, err, i+1)
				}
			}
			// The queue is served in that order: each end hands a0 the head.
			cur, _ := h.f.BuyerSession("m1", "busy")
			for i, b := range tc.want {
				specEnd(h, "m1", cur.SessionId, pb.EndReason_END_REASON_AGENT_ENDED)
				r, err := h.f.BuyerSession("m1", b)
				if err != nil || r.State != pb.SessionState_SESSION_STATE_ASSIGNED {
					t.Fatalf("after %d ends, %s should be served: %v %v", i+1, b, r, err)
				}
				cur = r
			}
		})
	}

	busyCases := []struct {
		name     string
		settings *pb.MerchantSettings
		queued   int
	}{
		{"full queue", &pb.MerchantSettings{QueueEnabled: true, MaxQueueLength: 2, DefaultGroupId: "g1"}, 2},
		{"queue off", &pb.MerchantSettings{QueueEnabled: false, DefaultGroupId: "g1"}, 0},
	}
	for _, tc := range busyCases {
		t.Run(tc.name+" answers busy without a session", func(t *testing.T) {
			h := newHarness(t)
			specMerchant(h, "m1", tc.settings, "g1")
			h.agent("m1", "a0", 1, "g1")
			h.consult("m1", "b0")
			for i := 1; i <= tc.queued; i++ {
				r := h.consult("m1", "b"+strconv.Itoa(i))
				specCheckResult(t, r, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), uint32(i))
			}
			mark := h.f.LastEventSeq()
			for try := 0; try < 2; try++ {
				r := h.consult("m1", "late")
				want := &pb.Result{Outcome: pb.Outcome_OUTCOME_BUSY, Surge: pb.SurgeLevel_SURGE_LEVEL_NORMAL}
				if !proto.Equal(r, want) {
					t.Fatalf("consult into a %s: %v, want %v", tc.name, r, want)
				}
			}
			if _, err := h.f.BuyerSession("m1", "late"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("busy buyer has a session: %v", err)
			}
			if evs := specEventLog(h, mark); len(evs) != 0 {
				t.Fatalf("busy answers emitted events: %v", evs)
			}
			st, _ := h.f.Stats("m1")
			if st.Busy != 2 || st.Consults != uint64(tc.queued+3) || st.Queued != uint64(tc.queued) {
				t.Fatalf("stats busy %d consults %d queued %d, want 2, %d, %d", st.Busy, st.Consults, st.Queued, tc.queued+3, tc.queued)
			}
		})
	}

	t.Run("estimated wait spreads over the group's online capacity", func(t *testing.T) {
		h := newHarness(t)
		h.basic(2, 2)
		for i := 0; i < 4; i++ {
			h.consult("m1", "b"+strconv.Itoa(i))
		}
		// 60 s mean handle time, capacity 2 + 2 slots.
		for i, want := range []int64{15_000, 30_000} {
			r := h.consult("m1", "q"+strconv.Itoa(i))
			specCheckResult(t, r, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), uint32(i+1))
			if r.EstimatedWaitMs != want {
				t.Fatalf("q%d: estimated wait %d, want %d", i, r.EstimatedWaitMs, want)
			}
		}
		// a1 steps away: 2 slots left online.
		specStatus(h, "m1", "a1", pb.AgentStatus_AGENT_STATUS_AWAY)
		for i, want := range []int64{30_000, 60_000} {
			if r, _ := h.f.BuyerSession("m1", "q"+strconv.Itoa(i)); r.EstimatedWaitMs != want {
				t.Fatalf("q%d with a1 away: estimated wait %d, want %d", i, r.EstimatedWaitMs, want)
			}
		}
	})

	t.Run("queue per group with no agent online", func(t *testing.T) {
		h := newHarness(t)
		h.basic(0, 1)
		r := h.consult("m1", "b1")
		specCheckResult(t, r, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), 1)
		if r.EstimatedWaitMs != 60_000 {
			t.Fatalf("estimated wait with no capacity: %d, want 60000", r.EstimatedWaitMs)
		}
	})
}

// ---------------------------------------------------------------------------
// 5. Push and pull

func TestSpec5_PushPull(t *testing.T) {
	t.Run("ending a session pushes the queue head to the freed agent", func(t *testing.T) {
		h := newHarness(t)
		h.basic(2, 1)
		h.consult("m1", "b0")
		r1 := h.consult("m1", "b1")
		r2, r3 := h.consult("m1", "b2"), h.consult("m1", "b3")
		specCheckResult(t, r2, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), 1)
		specCheckResult(t, r3, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), 2)
		mark := h.f.LastEventSeq()
		h.advance(5000)
		e := specEnd(h, "m1", r1.SessionId, pb.EndReason_END_REASON_AGENT_ENDED)
		specCheckResult(t, e, pb.Outcome_OUTCOME_ENDED, specEnded("a1", "g1", pb.EndReason_END_REASON_AGENT_ENDED), 0)
		specEqual(t, "events", specEventLog(h, mark), []string{
			specEv("ENDED", r1.SessionId, "a1", "g1", "reason=AGENT_ENDED"),
			specEv("ASSIGNED", r2.SessionId, "a1", "g1"),
		})
		s := specCheckSession(h, "m1", r2.SessionId, specAssigned("a1", "g1"))
		if s.QueuedMs != h.now-5000 || s.AssignedMs != h.now {
			t.Fatalf("queued %d assigned %d, want %d and %d", s.QueuedMs, s.AssignedMs, h.now-5000, h.now)
		}
		if b, _ := h.f.BuyerSession("m1", "b3"); b.Position != 1 {
			t.Fatalf("b3 position %d, want 1", b.Position)
		}
		st, _ := h.f.Stats("m1")
		if st.WaitMsBuckets[1] != 1 || st.WaitMsSum != 5000 {
			t.Fatalf("wait histogram %v sum %d, want one wait of 5000 ms", st.WaitMsBuckets, st.WaitMsSum)
		}
	})

	t.Run("a VIP queued later is pushed first", func(t *testing.T) {
		h := newHarness(t)
		h.basic(1, 1)
		r0 := h.consult("m1", "b0")
		x := h.consult("m1", "x")
		h.advance(100)
		v := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: "v", UserLevel: 4})
		specEnd(h, "m1", r0.SessionId, pb.EndReason_END_REASON_BUYER_LEFT)
		specCheckSession(h, "m1", v.SessionId, specAssigned("a0", "g1"))
		specCheckSession(h, "m1", x.SessionId, specQueued("g1"))
	})

	t.Run("an agent coming online drains the queue", func(t *testing.T) {
		h := newHarness(t)
		h.basic(0, 1)
		specAgent(h, &pb.UpsertAgent{MerchantId: "m1", AgentId: "a0", Limit: 2, Groups: []*pb.AgentGroup{{GroupId: "g1"}}}, pb.AgentStatus_AGENT_STATUS_OFFLINE)
		var qs []string
		for i := 0; i < 3; i++ {
			qs = append(qs, h.consult("m1", "b"+strconv.Itoa(i)).SessionId)
		}
		specStatus(h, "m1", "a0", pb.AgentStatus_AGENT_STATUS_AWAY)
		specCheckSession(h, "m1", qs[0], specQueued("g1"))
		mark := h.f.LastEventSeq()
		specStatus(h, "m1", "a0", pb.AgentStatus_AGENT_STATUS_ONLINE)
		specEqual(t, "events", specEventLog(h, mark), []string{
			"AGENT_STATUS a0 ONLINE",
			specEv("ASSIGNED", qs[0], "a0", "g1"),
			specEv("ASSIGNED", qs[1], "a0", "g1"),
		})
		specCheckSession(h, "m1", qs[2], specQueued("g1"))
	})

	t.Run("a raised limit drains the queue", func(t *testing.T) {
		h := newHarness(t)
		h.basic(1, 1)
		h.consult("m1", "b0")
		var qs []string
		for i := 1; i <= 3; i++ {
			qs = append(qs, h.consult("m1", "b"+strconv.Itoa(i)).SessionId)
		}
		mark := h.f.LastEventSeq()
		h.ok(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a0", Limit: 3, Groups: []*pb.AgentGroup{{GroupId: "g1", Skill: 50}}})
		specEqual(t, "events", specEventLog(h, mark), []string{
			"AGENT_UPSERTED",
			specEv("ASSIGNED", qs[0], "a0", "g1"),
			specEv("ASSIGNED", qs[1], "a0", "g1"),
		})
		specCheckSession(h, "m1", qs[2], specQueued("g1"))
	})

	pullSetup := func(t *testing.T) *harness {
		h := newHarness(t)
		h.merchant("m1", nil)
		h.group("m1", "p1", pb.GroupMode_GROUP_MODE_PULL)
		h.group("m1", "p2", pb.GroupMode_GROUP_MODE_PULL)
		// Queue switched off: pull groups queue anyway.
		h.merchant("m1", &pb.MerchantSettings{DefaultGroupId: "p1", Rules: []*pb.RoutingRule{{GroupId: "p2", Category: "two"}}})
		h.agent("m1", "a0", 3, "p1", "p2")
		return h
	}

	t.Run("pull groups never assign on their own", func(t *testing.T) {
		h := pullSetup(t)
		r := h.consult("m1", "x")
		specCheckResult(t, r, pb.Outcome_OUTCOME_QUEUED, specQueued("p1"), 1)
		specStatus(h, "m1", "a0", pb.AgentStatus_AGENT_STATUS_AWAY)
		specStatus(h, "m1", "a0", pb.AgentStatus_AGENT_STATUS_ONLINE)
		h.ok(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a0", Limit: 5, Groups: []*pb.AgentGroup{{GroupId: "p1"}, {GroupId: "p2"}}})
		specCheckSession(h, "m1", r.SessionId, specQueued("p1"))
		p := h.ok(&pb.PullNext{MerchantId: "m1", AgentId: "a0"})
		specCheckResult(t, p, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "p1"), 0)
		if p.SessionId != r.SessionId {
			t.Fatalf("pulled %s, want %s", p.SessionId, r.SessionId)
		}
		y := h.consult("m1", "y")
		specEnd(h, "m1", p.SessionId, pb.EndReason_END_REASON_AGENT_ENDED)
		specCheckSession(h, "m1", y.SessionId, specQueued("p1"))
	})

	t.Run("pull-next takes the best head across the agent's groups", func(t *testing.T) {
		h := pullSetup(t)
		x := h.consult("m1", "x")
		h.advance(1000)
		// Level 2 is worth 6 s: y is ahead of x although it came later.
		y := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: "y", Category: "two", UserLevel: 2})
		specCheckResult(t, y, pb.Outcome_OUTCOME_QUEUED, specQueued("p2"), 1)
		h.advance(1000)
		z := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: "z", Category: "two"})
		for _, want := range []struct {
			sid, group string
		}{{y.SessionId, "p2"}, {x.SessionId, "p1"}, {z.SessionId, "p2"}} {
			mark := h.f.LastEventSeq()
			p := h.ok(&pb.PullNext{MerchantId: "m1", AgentId: "a0"})
			specCheckResult(t, p, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", want.group), 0)
			if p.SessionId != want.sid {
				t.Fatalf("pulled %s, want %s", p.SessionId, want.sid)
			}
			specEqual(t, "events", specEventLog(h, mark), []string{specEv("ASSIGNED", want.sid, "a0", want.group)})
		}
		specEnd(h, "m1", x.SessionId, pb.EndReason_END_REASON_AGENT_ENDED)
		mark := h.f.LastEventSeq()
		p := h.ok(&pb.PullNext{MerchantId: "m1", AgentId: "a0"})
		if !proto.Equal(p, &pb.Result{Outcome: pb.Outcome_OUTCOME_NONE, Surge: pb.SurgeLevel_SURGE_LEVEL_NORMAL}) {
			t.Fatalf("pull-next with empty queues: %v, want OUTCOME_NONE", p)
		}
		if evs := specEventLog(h, mark); len(evs) != 0 {
			t.Fatalf("empty pull-next emitted %v", evs)
		}
	})

	t.Run("switching a group from pull to push drains it", func(t *testing.T) {
		h := pullSetup(t)
		x, y := h.consult("m1", "x"), h.consult("m1", "y")
		h.group("m1", "p1", pb.GroupMode_GROUP_MODE_PUSH)
		specCheckSession(h, "m1", x.SessionId, specAssigned("a0", "p1"))
		specCheckSession(h, "m1", y.SessionId, specAssigned("a0", "p1"))
	})
}

// ---------------------------------------------------------------------------
// 6. Transfer, end, idle timeout, max wait, agent offline

func TestSpec6_Transfer(t *testing.T) {
	t.Run("to an agent", func(t *testing.T) {
		h := newHarness(t)
		h.basic(2, 2)
		r0 := h.consult("m1", "b0")
		specCheckResult(t, r0, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g1"), 0)
		mark := h.f.LastEventSeq()
		h.advance(2000)
		n := h.ok(&pb.Transfer{MerchantId: "m1", SessionId: r0.SessionId, ToAgentId: "a1"})
		specCheckResult(t, n, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a1", "g1"), 0)
		if n.SessionId == r0.SessionId || n.BuyerId != "b0" {
			t.Fatalf("transfer result %v: want a new session of b0", n)
		}
		old := specCheckSession(h, "m1", r0.SessionId, specEnded("a0", "g1", pb.EndReason_END_REASON_TRANSFERRED))
		if old.EndedMs != h.now {
			t.Fatalf("old session ended at %d, want %d", old.EndedMs, h.now)
		}
		if s := specSession(h, "m1", n.SessionId); s.TransferredFrom != r0.SessionId || s.BuyerId != "b0" {
			t.Fatalf("new session %v: want transferred_from %s", s, r0.SessionId)
		}
		specEqual(t, "events", specEventLog(h, mark), []string{
			specEv("ENDED", r0.SessionId, "a0", "g1", "reason=TRANSFERRED"),
			specEv("ASSIGNED", n.SessionId, "a1", "g1"),
		})
		specCheckLoads(h, "m1", map[string]uint32{"a0": 0, "a1": 1})
		if b, _ := h.f.BuyerSession("m1", "b0"); b.SessionId != n.SessionId {
			t.Fatalf("buyer's active session %s, want %s", b.SessionId, n.SessionId)
		}
	})

	t.Run("to an agent frees a slot that the queue takes", func(t *testing.T) {
		h := newHarness(t)
		h.basic(1, 1)
		h.group("m1", "g2", pb.GroupMode_GROUP_MODE_PUSH)
		h.agent("m1", "x", 1, "g2")
		r0 := h.consult("m1", "b0")
		q := h.consult("m1", "b1")
		mark := h.f.LastEventSeq()
		n := h.ok(&pb.Transfer{MerchantId: "m1", SessionId: r0.SessionId, ToAgentId: "x"})
		specCheckResult(t, n, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("x", "g1"), 0)
		specEqual(t, "events", specEventLog(h, mark), []string{
			specEv("ENDED", r0.SessionId, "a0", "g1", "reason=TRANSFERRED"),
			specEv("ASSIGNED", n.SessionId, "x", "g1"),
			specEv("ASSIGNED", q.SessionId, "a0", "g1"),
		})
	})

	t.Run("to a group", func(t *testing.T) {
		h := newHarness(t)
		h.basic(1, 1)
		h.group("m1", "g2", pb.GroupMode_GROUP_MODE_PUSH)
		h.agent("m1", "x", 1, "g2")
		r0 := h.consult("m1", "b0")
		mark := h.f.LastEventSeq()
		n := h.ok(&pb.Transfer{MerchantId: "m1", SessionId: r0.SessionId, ToGroupId: "g2"})
		specCheckResult(t, n, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("x", "g2"), 0)
		specCheckSession(h, "m1", r0.SessionId, specEnded("a0", "g1", pb.EndReason_END_REASON_TRANSFERRED))
		if s := specSession(h, "m1", n.SessionId); s.TransferredFrom != r0.SessionId {
			t.Fatalf("transferred_from %q, want %q", s.TransferredFrom, r0.SessionId)
		}
		specEqual(t, "events", specEventLog(h, mark), []string{
			specEv("ENDED", r0.SessionId, "a0", "g1", "reason=TRANSFERRED"),
			specEv("ASSIGNED", n.SessionId, "x", "g2"),
		})
		// The transferred session moves again, into a group with no one
		// online: it queues there, keeping its place by original arrival.
		h.group("m1", "g3", pb.GroupMode_GROUP_MODE_PUSH)
		n2 := h.ok(&pb.Transfer{MerchantId: "m1", SessionId: n.SessionId, ToGroupId: "g3"})
		specCheckResult(t, n2, pb.Outcome_OUTCOME_QUEUED, specQueued("g3"), 1)
		if s := specSession(h, "m1", n2.SessionId); s.TransferredFrom != n.SessionId || s.QueueKey != specSession(h, "m1", r0.SessionId).QueueKey {
			t.Fatalf("second transfer %v: want transferred_from %s and the original queue key", s, n.SessionId)
		}
		specCheckLoads(h, "m1", map[string]uint32{"a0": 0, "x": 0})
		// A queued session transfers too.
		n3 := h.ok(&pb.Transfer{MerchantId: "m1", SessionId: n2.SessionId, ToAgentId: "a0"})
		specCheckResult(t, n3, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g3"), 0)
		if q := specQueue(h, "m1", "g3"); len(q) != 0 {
			t.Fatalf("g3 queue %v, want empty", q)
		}
	})

	t.Run("to the same group goes to another agent", func(t *testing.T) {
		h := newHarness(t)
		h.basic(2, 2)
		r0 := h.consult("m1", "b0")
		n := h.ok(&pb.Transfer{MerchantId: "m1", SessionId: r0.SessionId, ToGroupId: "g1"})
		specCheckResult(t, n, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a1", "g1"), 0)
	})

	t.Run("to a group whose only free agent is the current one", func(t *testing.T) {
		h := newHarness(t)
		h.basic(2, 1)
		r0, r1 := h.consult("m1", "b0"), h.consult("m1", "b1")
		specCheckResult(t, r1, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a1", "g1"), 0)
		n := h.ok(&pb.Transfer{MerchantId: "m1", SessionId: r0.SessionId, ToGroupId: "g1"})
		if n.AgentId == "a0" {
			specBug(t, "sessions.go applyTransfer: transfer of %s (agent a0) to group g1 skips a0 in place(), queues the new "+
				"session, then drainAgent(a0) hands it straight back to a0: result %v; want QUEUED in g1 (a1 is full) "+
				"and not assigned to the agent it was transferred away from", r0.SessionId, n)
		}
		specCheckResult(t, n, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), 1)
	})

	t.Run("errors", func(t *testing.T) {
		h := newHarness(t)
		h.merchant("m1", nil)
		h.group("m1", "g1", pb.GroupMode_GROUP_MODE_PUSH)
		h.merchant("m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", BotFirst: true})
		h.agent("m1", "a0", 1, "g1")
		bot := h.consult("m1", "bot")
		as := h.consult("m1", "as")
		h.ok(&pb.Escalate{MerchantId: "m1", SessionId: as.SessionId})
		done := h.consult("m1", "done")
		specEnd(h, "m1", done.SessionId, pb.EndReason_END_REASON_BOT_RESOLVED)
		h.advance(1000)
		specFails(h, &pb.Transfer{MerchantId: "m1", SessionId: as.SessionId, ToAgentId: "a0"}, ErrConflict, "to_agent_id")
		specFails(h, &pb.Transfer{MerchantId: "m1", SessionId: as.SessionId, ToAgentId: "ghost"}, ErrNotFound, "to_agent_id")
		specFails(h, &pb.Transfer{MerchantId: "m1", SessionId: as.SessionId, ToGroupId: "ghost"}, ErrNotFound, "to_group_id")
		specFails(h, &pb.Transfer{MerchantId: "m1", SessionId: bot.SessionId, ToGroupId: "g1"}, ErrConflict, "session_id")
		specFails(h, &pb.Transfer{MerchantId: "m1", SessionId: done.SessionId, ToGroupId: "g1"}, ErrConflict, "session_id")
		specFails(h, &pb.Transfer{MerchantId: "m1", SessionId: "1-999-0", ToGroupId: "g1"}, ErrNotFound, "session_id")
		specFails(h, &pb.Transfer{MerchantId: "m9", SessionId: as.SessionId, ToGroupId: "g1"}, ErrNotFound, "merchant_id")
	})

	t.Run("to a busy group answers busy and keeps the session", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{DefaultGroupId: "g1"}, "g1", "g2")
		h.agent("m1", "a0", 1, "g1")
		r0 := h.consult("m1", "b0")
		mark := h.f.LastEventSeq()
		r := h.ok(&pb.Transfer{MerchantId: "m1", SessionId: r0.SessionId, ToGroupId: "g2"})
		specCheckResult(t, r, pb.Outcome_OUTCOME_BUSY, specAssigned("a0", "g1"), 0)
		if r.SessionId != r0.SessionId {
			t.Fatalf("busy transfer names %s, want the unchanged %s", r.SessionId, r0.SessionId)
		}
		specCheckSession(h, "m1", r0.SessionId, specAssigned("a0", "g1"))
		if evs := specEventLog(h, mark); len(evs) != 0 {
			t.Fatalf("busy transfer emitted %v", evs)
		}
	})
}

func TestSpec6_End(t *testing.T) {
	// bot-first merchant: "bot" stays with the bot, "as" is escalated to a0
	// (limit 1), "qu" is escalated into the queue behind it.
	setup := func(t *testing.T) (*harness, map[pb.SessionState]string) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", BotFirst: true}, "g1")
		h.agent("m1", "a0", 1, "g1")
		bot := h.consult("m1", "bot")
		specCheckResult(t, bot, pb.Outcome_OUTCOME_BOT, specInBot(), 0)
		as := h.consult("m1", "as")
		specCheckResult(t, h.ok(&pb.Escalate{MerchantId: "m1", SessionId: as.SessionId}), pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g1"), 0)
		qu := h.consult("m1", "qu")
		specCheckResult(t, h.ok(&pb.Escalate{MerchantId: "m1", SessionId: qu.SessionId}), pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), 1)
		return h, map[pb.SessionState]string{
			pb.SessionState_SESSION_STATE_BOT: bot.SessionId, pb.SessionState_SESSION_STATE_ASSIGNED: as.SessionId,
			pb.SessionState_SESSION_STATE_QUEUED: qu.SessionId,
		}
	}
	const (
		bot = pb.SessionState_SESSION_STATE_BOT
		asg = pb.SessionState_SESSION_STATE_ASSIGNED
		que = pb.SessionState_SESSION_STATE_QUEUED
	)
	cases := []struct {
		state  pb.SessionState
		reason pb.EndReason
		ok     bool
		agent  string // of the ended session
		group  string
	}{
		{bot, pb.EndReason_END_REASON_BOT_RESOLVED, true, "", ""},
		{bot, pb.EndReason_END_REASON_BUYER_LEFT, true, "", ""},
		{bot, pb.EndReason_END_REASON_AGENT_ENDED, true, "", ""},
		{asg, pb.EndReason_END_REASON_AGENT_ENDED, true, "a0", "g1"},
		{asg, pb.EndReason_END_REASON_BUYER_LEFT, true, "a0", "g1"},
		{asg, pb.EndReason_END_REASON_BOT_RESOLVED, false, "", ""},
		{que, pb.EndReason_END_REASON_BUYER_LEFT, true, "", "g1"},
		{que, pb.EndReason_END_REASON_AGENT_ENDED, true, "", "g1"},
		{que, pb.EndReason_END_REASON_BOT_RESOLVED, false, "", ""},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s %s", tc.state, tc.reason), func(t *testing.T) {
			h, ids := setup(t)
			sid := ids[tc.state]
			h.advance(3000)
			if !tc.ok {
				specFails(h, &pb.End{MerchantId: "m1", SessionId: sid, Reason: tc.reason}, ErrConflict, "reason")
				return
			}
			mark := h.f.LastEventSeq()
			r := specEnd(h, "m1", sid, tc.reason)
			specCheckResult(t, r, pb.Outcome_OUTCOME_ENDED, specEnded(tc.agent, tc.group, tc.reason), 0)
			s := specCheckSession(h, "m1", sid, specEnded(tc.agent, tc.group, tc.reason))
			if s.EndedMs != h.now {
				t.Fatalf("ended at %d, want %d", s.EndedMs, h.now)
			}
			want := []string{specEv("ENDED", sid, tc.agent, tc.group, "reason="+strings.TrimPrefix(tc.reason.String(), "END_REASON_"))}
			if tc.state == asg {
				want = append(want, specEv("ASSIGNED", ids[que], "a0", "g1"))
			}
			specEqual(t, "events", specEventLog(h, mark), want)
			st, _ := h.f.Stats("m1")
			if st.EndedByReason[tc.reason] != 1 {
				t.Fatalf("ended_by_reason %v, want one %s", st.EndedByReason, tc.reason)
			}
			if _, err := h.f.BuyerSession("m1", s.BuyerId); !errors.Is(err, ErrNotFound) {
				t.Fatalf("buyer still has an active session: %v", err)
			}
			specFails(h, &pb.End{MerchantId: "m1", SessionId: sid, Reason: tc.reason}, ErrConflict, "session_id")
			specFails(h, &pb.Escalate{MerchantId: "m1", SessionId: sid}, ErrConflict, "session_id")
		})
	}
	t.Run("unknown session and escalating a session not with the bot", func(t *testing.T) {
		h, ids := setup(t)
		specFails(h, &pb.End{MerchantId: "m1", SessionId: "1-999-0", Reason: pb.EndReason_END_REASON_BUYER_LEFT}, ErrNotFound, "session_id")
		specFails(h, &pb.Escalate{MerchantId: "m1", SessionId: ids[asg]}, ErrConflict, "session_id")
		specFails(h, &pb.Escalate{MerchantId: "m1", SessionId: ids[que]}, ErrConflict, "session_id")
		specFails(h, &pb.FirstReply{MerchantId: "m1", SessionId: ids[que]}, ErrConflict, "session_id")
		specFails(h, &pb.FirstReply{MerchantId: "m1", SessionId: ids[bot]}, ErrConflict, "session_id")
	})
}

func TestSpec6_IdleTimeout(t *testing.T) {
	h := newHarness(t)
	specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", BotFirst: true, IdleTimeoutMs: 10_000}, "g1")
	h.agent("m1", "a0", 1, "g1")
	t0 := h.now
	b := h.consult("m1", "b")
	x := h.consult("m1", "x")
	h.ok(&pb.Escalate{MerchantId: "m1", SessionId: x.SessionId})
	q := h.consult("m1", "q")
	h.ok(&pb.Escalate{MerchantId: "m1", SessionId: q.SessionId})
	specCheckSession(h, "m1", q.SessionId, specQueued("g1"))

	h.now = t0 + 9_999
	mark := h.f.LastEventSeq()
	h.tick()
	if evs := specEventLog(h, mark); len(evs) != 0 {
		t.Fatalf("tick before the idle timeout: %v", evs)
	}
	h.now = t0 + 10_000
	h.tick()
	// Timers due at the same time fire in session id order; the slot x
	// frees goes to q at once.
	endB := specEv("ENDED", b.SessionId, "", "", "reason=IDLE_TIMEOUT")
	endX := specEv("ENDED", x.SessionId, "a0", "g1", "reason=IDLE_TIMEOUT")
	assignQ := specEv("ASSIGNED", q.SessionId, "a0", "g1")
	want := []string{endB, endX, assignQ}
	if x.SessionId < b.SessionId {
		want = []string{endX, assignQ, endB}
	}
	specEqual(t, "events", specEventLog(h, mark), want)
	specCheckSession(h, "m1", b.SessionId, specEnded("", "", pb.EndReason_END_REASON_IDLE_TIMEOUT))
	specCheckSession(h, "m1", x.SessionId, specEnded("a0", "g1", pb.EndReason_END_REASON_IDLE_TIMEOUT))
	// q was assigned at t0+10s; a first reply at t0+15s restarts its clock.
	h.now = t0 + 15_000
	h.ok(&pb.FirstReply{MerchantId: "m1", SessionId: q.SessionId})
	h.now = t0 + 24_999
	h.tick()
	specCheckSession(h, "m1", q.SessionId, specAssigned("a0", "g1"))
	h.now = t0 + 25_000
	h.tick()
	s := specCheckSession(h, "m1", q.SessionId, specEnded("a0", "g1", pb.EndReason_END_REASON_IDLE_TIMEOUT))
	if s.EndedMs != t0+25_000 || s.FirstReplyMs != t0+15_000 {
		t.Fatalf("ended %d first reply %d, want %d and %d", s.EndedMs, s.FirstReplyMs, t0+25_000, t0+15_000)
	}
	st, _ := h.f.Stats("m1")
	if st.EndedByReason[pb.EndReason_END_REASON_IDLE_TIMEOUT] != 3 || st.InBot != 0 || st.Assigned != 0 || st.Queued != 0 {
		t.Fatalf("stats %v: want 3 idle timeouts and nothing active", st.MerchantStats)
	}

	t.Run("changing the idle timeout keeps the last activity", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", IdleTimeoutMs: 60_000}, "g1")
		h.agent("m1", "a0", 1, "g1")
		t0 := h.now
		r := h.consult("m1", "b")
		h.now = t0 + 50_000
		h.merchant("m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", IdleTimeoutMs: 30_000})
		s := specSession(h, "m1", r.SessionId)
		if s.LastActivityMs != t0 {
			specBug(t, "config.go applyUpsertMerchant: changing idle_timeout_ms calls touch() on every session, which "+
				"records activity that never happened: last_activity_ms of %s went from %d to %d (the settings change), "+
				"so a session idle for 50 s under a new 30 s timeout is not ended until %d instead of at the next tick; "+
				"want last_activity_ms kept and the timer re-armed at last_activity_ms + the new timeout", r.SessionId, t0, s.LastActivityMs, s.LastActivityMs+30_000)
		}
		h.tick()
		specCheckSession(h, "m1", r.SessionId, specEnded("a0", "g1", pb.EndReason_END_REASON_IDLE_TIMEOUT))
	})

	t.Run("queued sessions do not idle out", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", IdleTimeoutMs: 1000}, "g1")
		r := h.consult("m1", "b")
		h.advance(1_000_000)
		h.tick()
		specCheckSession(h, "m1", r.SessionId, specQueued("g1"))
	})
}

func TestSpec6_MaxWait(t *testing.T) {
	// g1 (a0, full) overflows into g2; max wait 30 s.
	setup := func(t *testing.T, g2Agent bool, g2Overflow string) (*harness, string) {
		h := newHarness(t)
		specMerchant(h, "m1", nil, "g2")
		h.ok(&pb.UpsertGroup{MerchantId: "m1", GroupId: "g1", OverflowGroupId: "g2"})
		if g2Overflow != "" {
			h.ok(&pb.UpsertGroup{MerchantId: "m1", GroupId: "g2", OverflowGroupId: g2Overflow})
		}
		h.merchant("m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", MaxWaitMs: 30_000})
		h.agent("m1", "a0", 1, "g1")
		if g2Agent {
			h.agent("m1", "x", 1, "g2")
		}
		h.consult("m1", "b0")
		h.advance(1000)
		q := h.consult("m1", "q")
		specCheckResult(t, q, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), 1)
		if s := specSession(h, "m1", q.SessionId); s.DeadlineMs != h.now+30_000 {
			t.Fatalf("deadline %d, want %d", s.DeadlineMs, h.now+30_000)
		}
		return h, q.SessionId
	}

	t.Run("overflow to a group with a free agent", func(t *testing.T) {
		h, q := setup(t, true, "")
		t0 := h.now
		h.now = t0 + 29_999
		h.tick()
		specCheckSession(h, "m1", q, specQueued("g1"))
		mark := h.f.LastEventSeq()
		h.now = t0 + 30_000
		h.tick()
		specEqual(t, "events", specEventLog(h, mark), []string{
			specEv("OVERFLOWED", q, "", "g1"),
			specEv("ASSIGNED", q, "x", "g2"),
		})
		if s := specCheckSession(h, "m1", q, specAssigned("x", "g2")); s.OverflowHops != 1 || s.DeadlineMs != 0 {
			t.Fatalf("overflow hops %d deadline %d, want 1 and 0", s.OverflowHops, s.DeadlineMs)
		}
	})

	t.Run("overflow into the overflow group's queue, then abandoned", func(t *testing.T) {
		h, q := setup(t, false, "")
		t0 := h.now
		h.now = t0 + 30_000
		mark := h.f.LastEventSeq()
		h.tick()
		specEqual(t, "events", specEventLog(h, mark), []string{
			specEv("OVERFLOWED", q, "", "g1"),
			specEv("QUEUED", q, "", "g2"),
		})
		s := specCheckSession(h, "m1", q, specQueued("g2"))
		if s.DeadlineMs != t0+60_000 || s.OverflowHops != 1 {
			t.Fatalf("deadline %d hops %d, want %d and 1", s.DeadlineMs, s.OverflowHops, t0+60_000)
		}
		if b, _ := h.f.BuyerSession("m1", "q"); b.Position != 1 || b.GroupId != "g2" {
			t.Fatalf("BuyerSession %v: want position 1 in g2", b)
		}
		h.now = t0 + 60_000
		mark = h.f.LastEventSeq()
		h.tick()
		specEqual(t, "events", specEventLog(h, mark), []string{specEv("ENDED", q, "", "g2", "reason=ABANDONED")})
		specCheckSession(h, "m1", q, specEnded("", "g2", pb.EndReason_END_REASON_ABANDONED))
	})

	t.Run("no overflow group: abandoned", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", MaxWaitMs: 30_000}, "g1")
		q := h.consult("m1", "q")
		h.advance(30_000)
		mark := h.f.LastEventSeq()
		h.tick()
		specEqual(t, "events", specEventLog(h, mark), []string{specEv("ENDED", q.SessionId, "", "g1", "reason=ABANDONED")})
		st, _ := h.f.Stats("m1")
		if st.EndedByReason[pb.EndReason_END_REASON_ABANDONED] != 1 || st.Queued != 0 {
			t.Fatalf("stats: %v", st.MerchantStats)
		}
		if q := specQueue(h, "m1", "g1"); len(q) != 0 {
			t.Fatalf("queue %v, want empty", q)
		}
	})

	t.Run("switching max wait off stops the waits already running", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", MaxWaitMs: 30_000}, "g1")
		t0 := h.now
		q := h.consult("m1", "q")
		h.now = t0 + 10_000
		h.merchant("m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1"}) // max_wait_ms 0: no limit
		h.now = t0 + 30_000
		h.tick()
		if s := specSession(h, "m1", q.SessionId); s.State != pb.SessionState_SESSION_STATE_QUEUED {
			specBug(t, "config.go applyUpsertMerchant: setting max_wait_ms to 0 (no limit) leaves the deadlines of buyers "+
				"already queued armed: %s was ended %s at %d although the merchant has no max wait any more; want it "+
				"still QUEUED (applyUpsertMerchant re-arms idle timers when idle_timeout_ms changes, but never wait "+
				"timers when max_wait_ms changes)", q.SessionId, s.EndReason, s.EndedMs)
		}
	})

	t.Run("overflow hops are bounded in a cycle", func(t *testing.T) {
		h, q := setup(t, false, "g1")
		t0 := h.now
		for i, g := range []string{"g2", "g1", "g2"} {
			h.now = t0 + int64(i+1)*30_000
			h.tick()
			if s := specCheckSession(h, "m1", q, specQueued(g)); s.OverflowHops != uint32(i+1) {
				t.Fatalf("hop %d: %d hops", i+1, s.OverflowHops)
			}
		}
		h.now = t0 + 120_000
		h.tick()
		specCheckSession(h, "m1", q, specEnded("", "g2", pb.EndReason_END_REASON_ABANDONED))
	})
}

func TestSpec6_AgentOffline(t *testing.T) {
	t.Run("sessions stay with an agent who goes offline", func(t *testing.T) {
		h := newHarness(t)
		h.basic(2, 2)
		r0, r1, r2 := h.consult("m1", "b0"), h.consult("m1", "b1"), h.consult("m1", "b2")
		specCheckResult(t, r1, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a1", "g1"), 0)
		specCheckResult(t, r2, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g1"), 0)
		mark := h.f.LastEventSeq()
		specStatus(h, "m1", "a0", pb.AgentStatus_AGENT_STATUS_OFFLINE)
		specEqual(t, "events", specEventLog(h, mark), []string{"AGENT_STATUS a0 OFFLINE"})
		specCheckSession(h, "m1", r0.SessionId, specAssigned("a0", "g1"))
		specCheckSession(h, "m1", r2.SessionId, specAssigned("a0", "g1"))
		specCheckLoads(h, "m1", map[string]uint32{"a0": 2, "a1": 1})
		// No new buyers for a0, even when a slot frees up.
		r3 := h.consult("m1", "b3")
		specCheckResult(t, r3, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a1", "g1"), 0)
		specEnd(h, "m1", r0.SessionId, pb.EndReason_END_REASON_AGENT_ENDED)
		r4 := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: "b4", PreferredAgentId: "a0"})
		specCheckResult(t, r4, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), 1)
	})

	t.Run("requeue on offline: others take the sessions", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", RequeueOnOffline: true}, "g1")
		h.agent("m1", "a0", 2, "g1")
		h.agent("m1", "a1", 5, "g1")
		r0 := h.consult("m1", "b0")
		specCheckResult(t, r0, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g1"), 0)
		mark := h.f.LastEventSeq()
		h.advance(1000)
		specStatus(h, "m1", "a0", pb.AgentStatus_AGENT_STATUS_OFFLINE)
		specEqual(t, "events", specEventLog(h, mark), []string{
			"AGENT_STATUS a0 OFFLINE",
			specEv("REQUEUED", r0.SessionId, "", "g1"),
			specEv("ASSIGNED", r0.SessionId, "a1", "g1"),
		})
		specCheckSession(h, "m1", r0.SessionId, specAssigned("a1", "g1"))
		specCheckLoads(h, "m1", map[string]uint32{"a0": 0, "a1": 1})
	})

	t.Run("requeue on offline: ahead of later arrivals until capacity frees", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", RequeueOnOffline: true}, "g1")
		h.agent("m1", "a0", 2, "g1")
		h.agent("m1", "a1", 2, "g1")
		h.agent("m1", "a2", 1, "g1")
		ids := map[string]string{}
		for i, want := range []string{"a0", "a1", "a2", "a0", "a1"} {
			h.advance(100)
			b := "b" + strconv.Itoa(i)
			r := h.consult("m1", b)
			specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned(want, "g1"), 0)
			ids[b] = r.SessionId
		}
		h.advance(100)
		ids["late"] = h.consult("m1", "late").SessionId
		mark := h.f.LastEventSeq()
		specStatus(h, "m1", "a0", pb.AgentStatus_AGENT_STATUS_OFFLINE)
		specEqual(t, "events", specEventLog(h, mark), []string{
			"AGENT_STATUS a0 OFFLINE",
			specEv("REQUEUED", ids["b0"], "", "g1"),
			specEv("REQUEUED", ids["b3"], "", "g1"),
		})
		specEqual(t, "queue", specQueue(h, "m1", "g1"), []string{"b0", "b3", "late"})
		specCheckLoads(h, "m1", map[string]uint32{"a0": 0, "a1": 2, "a2": 1})
		specEnd(h, "m1", ids["b2"], pb.EndReason_END_REASON_AGENT_ENDED)
		specCheckSession(h, "m1", ids["b0"], specAssigned("a2", "g1"))
		h.ok(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a1", Limit: 4, Groups: []*pb.AgentGroup{{GroupId: "g1", Skill: 50}}})
		specCheckSession(h, "m1", ids["b3"], specAssigned("a1", "g1"))
		specCheckSession(h, "m1", ids["late"], specAssigned("a1", "g1"))
	})

	t.Run("away keeps sessions even with requeue on offline", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", RequeueOnOffline: true}, "g1")
		h.agent("m1", "a0", 2, "g1")
		h.agent("m1", "a1", 2, "g1")
		r0 := h.consult("m1", "b0")
		specStatus(h, "m1", "a0", pb.AgentStatus_AGENT_STATUS_AWAY)
		specCheckSession(h, "m1", r0.SessionId, specAssigned("a0", "g1"))
	})
}

// ---------------------------------------------------------------------------
// 7. One active session per buyer; request ids

func TestSpec7_OneSessionPerBuyer(t *testing.T) {
	h := newHarness(t)
	specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1"}, "g1")
	h.agent("m1", "a0", 1, "g1")
	a := h.consult("m1", "a")
	q := h.consult("m1", "q")
	mark := h.f.LastEventSeq()
	st0, _ := h.f.Stats("m1")
	for _, tc := range []struct {
		first *pb.Result
		buyer string
		want  specWant
		pos   uint32
	}{{a, "a", specAssigned("a0", "g1"), 0}, {q, "q", specQueued("g1"), 1}} {
		r := h.ok(&pb.Consult{MerchantId: "m1", BuyerId: tc.buyer, QuestionType: "other", UserLevel: 9})
		specCheckResult(t, r, pb.Outcome_OUTCOME_EXISTING, tc.want, tc.pos)
		if r.SessionId != tc.first.SessionId {
			t.Fatalf("repeat consult of %s: session %s, want %s", tc.buyer, r.SessionId, tc.first.SessionId)
		}
	}
	if evs := specEventLog(h, mark); len(evs) != 0 {
		t.Fatalf("repeat consults emitted %v", evs)
	}
	if st, _ := h.f.Stats("m1"); st.Consults != st0.Consults {
		t.Fatalf("repeat consults counted: %d, want %d", st.Consults, st0.Consults)
	}
	// Another merchant's buyer of the same id is a different buyer.
	specMerchant(h, "m2", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1"}, "g1")
	if r := h.consult("m2", "a"); r.Outcome != pb.Outcome_OUTCOME_QUEUED || r.SessionId == a.SessionId {
		t.Fatalf("buyer a at m2: %v", r)
	}
	// Once ended, the buyer's next consult opens a new session.
	specEnd(h, "m1", a.SessionId, pb.EndReason_END_REASON_BUYER_LEFT)
	n := h.consult("m1", "a")
	if n.Outcome != pb.Outcome_OUTCOME_QUEUED || n.SessionId == a.SessionId {
		t.Fatalf("consult after end: %v", n)
	}

	t.Run("bot session", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{BotFirst: true, DefaultGroupId: "g1"}, "g1")
		b := h.consult("m1", "b")
		r := h.consult("m1", "b")
		specCheckResult(t, r, pb.Outcome_OUTCOME_EXISTING, specInBot(), 0)
		if r.SessionId != b.SessionId {
			t.Fatalf("repeat consult: %s, want %s", r.SessionId, b.SessionId)
		}
	})
}

func TestSpec7_RequestID(t *testing.T) {
	bodies := []struct {
		name string
		body func(h *harness, live map[string]string) any
	}{
		{"consult assigned", func(h *harness, _ map[string]string) any { return &pb.Consult{MerchantId: "m1", BuyerId: "new"} }},
		{"consult busy", func(h *harness, _ map[string]string) any { return &pb.Consult{MerchantId: "m2", BuyerId: "new"} }},
		{"transfer", func(h *harness, live map[string]string) any {
			return &pb.Transfer{MerchantId: "m1", SessionId: live["b0"], ToAgentId: "a1"}
		}},
		{"end", func(h *harness, live map[string]string) any {
			return &pb.End{MerchantId: "m1", SessionId: live["b0"], Reason: pb.EndReason_END_REASON_AGENT_ENDED}
		}},
		{"pull next", func(h *harness, _ map[string]string) any { return &pb.PullNext{MerchantId: "m1", AgentId: "a1"} }},
		{"agent status", func(h *harness, _ map[string]string) any {
			return &pb.SetAgentStatus{MerchantId: "m1", AgentId: "a1", Status: pb.AgentStatus_AGENT_STATUS_AWAY}
		}},
	}
	setup := func(t *testing.T) (*harness, map[string]string) {
		h := newHarness(t)
		h.basic(2, 2)
		specMerchant(h, "m2", &pb.MerchantSettings{DefaultGroupId: "g1"}, "g1")
		live := map[string]string{}
		for _, b := range []string{"b0", "b1"} {
			live[b] = h.consult("m1", b).SessionId
		}
		return h, live
	}
	for _, tc := range bodies {
		t.Run(tc.name, func(t *testing.T) {
			h, live := setup(t)
			c := h.cmd(tc.body(h, live))
			c.RequestId = "retry-me"
			first := h.apply(c)[0]
			if err := ResultError(first); err != nil {
				t.Fatalf("first apply: %v", err)
			}
			state, seq := specState(t, h.f), h.f.LastEventSeq()
			// The retry comes later, in another entry, even as part of a
			// batch: it gets the first result and changes nothing.
			h.advance(5000)
			retry := proto.CloneOf(c)
			retry.TimeUnixMs = h.now
			for i, r := range [][]*pb.Result{h.apply(retry), h.apply(retry, retry)} {
				for _, got := range r {
					if !proto.Equal(got, first) {
						t.Fatalf("retry %d: %v, want the first result %v", i, got, first)
					}
				}
			}
			if !bytes.Equal(specState(t, h.f), state) || h.f.LastEventSeq() != seq {
				t.Fatal("a retried request changed the state")
			}
			// A different body under the same request id is a retry too.
			other := h.cmd(&pb.Consult{MerchantId: CommandMerchant(c), BuyerId: "other"})
			other.RequestId = "retry-me"
			if got := h.apply(other)[0]; !proto.Equal(got, first) {
				t.Fatalf("same request id, other body: %v, want %v", got, first)
			}
			if !bytes.Equal(specState(t, h.f), state) {
				t.Fatal("a retried request id with another body changed the state")
			}
		})
	}

	t.Run("a retry after a failover", func(t *testing.T) {
		h, _ := setup(t)
		c := h.cmd(&pb.Consult{MerchantId: "m1", BuyerId: "new"})
		first := h.apply(c)[0]
		h.f = specRestore(t, h.f)
		state := specState(t, h.f)
		h.advance(1000)
		c.TimeUnixMs = h.now
		if got := h.apply(c)[0]; !proto.Equal(got, first) {
			t.Fatalf("retry on the new leader: %v, want %v", got, first)
		}
		if !bytes.Equal(specState(t, h.f), state) {
			t.Fatal("a retry on the new leader changed the state")
		}
	})

	t.Run("two identical commands in one entry", func(t *testing.T) {
		h, _ := setup(t)
		c := h.cmd(&pb.Consult{MerchantId: "m1", BuyerId: "twice"})
		rs := h.apply(c, c)
		if !proto.Equal(rs[0], rs[1]) || rs[0].Outcome != pb.Outcome_OUTCOME_ASSIGNED {
			t.Fatalf("results %v and %v: want the same assignment twice", rs[0], rs[1])
		}
		st, _ := h.f.Stats("m1")
		if st.Consults != 3 || st.Assigned != 3 {
			t.Fatalf("consults %d assigned %d, want 3 and 3", st.Consults, st.Assigned)
		}
	})

	t.Run("merchants may reuse a request id", func(t *testing.T) {
		h := newHarness(t)
		for _, m := range []string{"m1", "m2"} {
			specMerchant(h, m, &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1"}, "g1")
			h.agent(m, "a0", 1, "g1")
		}
		var results []*pb.Result
		for _, m := range []string{"m1", "m2"} {
			c := h.cmd(&pb.Consult{MerchantId: m, BuyerId: "b"})
			c.RequestId = "shared"
			results = append(results, h.apply(c)[0])
		}
		for i, m := range []string{"m1", "m2"} {
			specCheckResult(t, results[i], pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g1"), 0)
			if _, err := h.f.Session(m, results[i].SessionId); err != nil {
				t.Fatalf("%s: %v", m, err)
			}
		}
		if results[0].SessionId == results[1].SessionId {
			t.Fatalf("both merchants got session %s", results[0].SessionId)
		}
	})

	t.Run("a failed command's request id is not remembered", func(t *testing.T) {
		h := newHarness(t)
		c := h.cmd(&pb.Consult{MerchantId: "m1", BuyerId: "b"})
		c.RequestId = "early"
		specFailsCmd(h, c, ErrNotFound, "merchant_id")
		h.basic(1, 1)
		c.TimeUnixMs = h.now
		r := h.apply(c)[0]
		specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g1"), 0)
	})
}

// ---------------------------------------------------------------------------
// 8. Surge levels

func TestSpec8_Surge(t *testing.T) {
	const baseline = 2
	h := newHarness(t)
	// Queue switched off and one slot: at breaker the queue is forced on.
	specMerchant(h, "m1", &pb.MerchantSettings{DefaultGroupId: "g1", SurgeBaselinePerMinute: baseline}, "g1")
	h.agent("m1", "a0", 1, "g1")
	if h.now%surgeBucketMs != 0 {
		t.Fatalf("harness time %d is not at a 5 s bucket boundary", h.now)
	}
	t0 := h.now
	mark := h.f.LastEventSeq()
	var wantEvents []string
	var queuedIDs []string
	level := pb.SurgeLevel_SURGE_LEVEL_NORMAL
	for i := 1; i <= 8*baseline+1; i++ {
		h.now = t0 + int64(i)*100 // all within the first 5 s bucket
		switch i {
		case 3 * baseline:
			level = pb.SurgeLevel_SURGE_LEVEL_WARNING
		case 5 * baseline:
			level = pb.SurgeLevel_SURGE_LEVEL_SCALE
		case 8 * baseline:
			level = pb.SurgeLevel_SURGE_LEVEL_BREAKER
		}
		if i == 3*baseline || i == 5*baseline || i == 8*baseline {
			wantEvents = append(wantEvents, "SURGE_CHANGED "+strings.TrimPrefix(level.String(), "SURGE_LEVEL_"))
		}
		r := h.consult("m1", "b"+strconv.Itoa(i))
		if r.Surge != level {
			t.Fatalf("consult %d: surge %s, want %s", i, r.Surge, level)
		}
		st, _ := h.f.Stats("m1")
		if st.Surge != level || st.InflowPerMinute != uint64(i) {
			t.Fatalf("consult %d: Stats surge %s inflow %d, want %s and %d", i, st.Surge, st.InflowPerMinute, level, i)
		}
		switch {
		case i == 1:
			specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned("a0", "g1"), 0)
			wantEvents = append(wantEvents, specEv("ASSIGNED", r.SessionId, "a0", "g1"))
		case level != pb.SurgeLevel_SURGE_LEVEL_BREAKER:
			if r.Outcome != pb.Outcome_OUTCOME_BUSY || r.Compensation {
				t.Fatalf("consult %d below breaker with the queue off: %v, want BUSY", i, r)
			}
		default:
			specCheckResult(t, r, pb.Outcome_OUTCOME_QUEUED, specQueued("g1"), uint32(len(queuedIDs)+1))
			if !r.Compensation {
				t.Fatalf("consult %d queued at breaker without compensation: %v", i, r)
			}
			if s := specSession(h, "m1", r.SessionId); !s.Compensation {
				t.Fatalf("session %s not flagged for compensation", r.SessionId)
			}
			queuedIDs = append(queuedIDs, r.SessionId)
			wantEvents = append(wantEvents, specEv("QUEUED", r.SessionId, "", "g1", "comp"))
		}
	}
	specEqual(t, "events", specEventLog(h, mark), wantEvents)
	if b, _ := h.f.BuyerSession("m1", "b16"); !b.Compensation || b.Surge != pb.SurgeLevel_SURGE_LEVEL_BREAKER {
		t.Fatalf("BuyerSession at breaker: %v", b)
	}

	// The minute passes: the breaker holds until the first bucket leaves the
	// window at t0+60 s, and the level falls straight back to normal.
	h.now = t0 + 59_999
	mark = h.f.LastEventSeq()
	h.tick()
	if st, _ := h.f.Stats("m1"); st.Surge != pb.SurgeLevel_SURGE_LEVEL_BREAKER {
		t.Fatalf("surge %s before the minute passed", st.Surge)
	}
	h.now = t0 + 60_000
	h.tick()
	specEqual(t, "events", specEventLog(h, mark), []string{"SURGE_CHANGED NORMAL"})
	st, _ := h.f.Stats("m1")
	if st.Surge != pb.SurgeLevel_SURGE_LEVEL_NORMAL || st.InflowPerMinute != 0 {
		t.Fatalf("after the minute: surge %s inflow %d", st.Surge, st.InflowPerMinute)
	}
	// Queued buyers keep their flag; the queue is off again for newcomers.
	if r := h.consult("m1", "after"); r.Outcome != pb.Outcome_OUTCOME_BUSY || r.Surge != pb.SurgeLevel_SURGE_LEVEL_NORMAL {
		t.Fatalf("consult after the surge: %v, want BUSY at NORMAL", r)
	}
	b1, _ := h.f.BuyerSession("m1", "b1")
	mark = h.f.LastEventSeq()
	specEnd(h, "m1", b1.SessionId, pb.EndReason_END_REASON_AGENT_ENDED)
	specEqual(t, "events", specEventLog(h, mark), []string{
		specEv("ENDED", b1.SessionId, "a0", "g1", "reason=AGENT_ENDED"),
		specEv("ASSIGNED", queuedIDs[0], "a0", "g1", "comp"),
	})

	t.Run("levels step down bucket by bucket", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", SurgeBaselinePerMinute: 1}, "g1")
		t0 := h.now
		mark := h.f.LastEventSeq()
		n := 0
		consult := func(k int) {
			for i := 0; i < k; i++ {
				n++
				h.consult("m1", "b"+strconv.Itoa(n))
			}
		}
		check := func(at int64, tick bool, level pb.SurgeLevel, inflow uint64) {
			t.Helper()
			h.now = t0 + at
			if tick {
				h.tick()
			}
			st, _ := h.f.Stats("m1")
			if st.Surge != level || st.InflowPerMinute != inflow {
				t.Fatalf("at +%d ms: surge %s inflow %d, want %s and %d", at, st.Surge, st.InflowPerMinute, level, inflow)
			}
		}
		consult(3) // 3 at +0 s
		check(0, false, pb.SurgeLevel_SURGE_LEVEL_WARNING, 3)
		h.now = t0 + 20_000
		consult(2) // 2 at +20 s
		check(20_000, false, pb.SurgeLevel_SURGE_LEVEL_SCALE, 5)
		h.now = t0 + 40_000
		consult(3) // 3 at +40 s
		check(40_000, false, pb.SurgeLevel_SURGE_LEVEL_BREAKER, 8)
		check(59_999, true, pb.SurgeLevel_SURGE_LEVEL_BREAKER, 8)
		check(60_000, true, pb.SurgeLevel_SURGE_LEVEL_SCALE, 5)
		check(80_000, true, pb.SurgeLevel_SURGE_LEVEL_WARNING, 3)
		check(99_999, true, pb.SurgeLevel_SURGE_LEVEL_WARNING, 3)
		check(100_000, true, pb.SurgeLevel_SURGE_LEVEL_NORMAL, 0)
		var surges []string
		for _, e := range specEventLog(h, mark) {
			if strings.HasPrefix(e, "SURGE_CHANGED") {
				surges = append(surges, e)
			}
		}
		specEqual(t, "surge events", surges, []string{
			"SURGE_CHANGED WARNING", "SURGE_CHANGED SCALE", "SURGE_CHANGED BREAKER",
			"SURGE_CHANGED SCALE", "SURGE_CHANGED WARNING", "SURGE_CHANGED NORMAL",
		})
	})

	t.Run("no baseline: always normal", func(t *testing.T) {
		h := newHarness(t)
		h.basic(0, 1)
		for i := 0; i < 50; i++ {
			if r := h.consult("m1", "b"+strconv.Itoa(i)); r.Surge != pb.SurgeLevel_SURGE_LEVEL_NORMAL || r.Compensation {
				t.Fatalf("consult %d: %v", i, r)
			}
		}
	})
}

// ---------------------------------------------------------------------------
// 9. Time from the log

func TestSpec9_Time(t *testing.T) {
	t.Run("an earlier command time does not move time back", func(t *testing.T) {
		h := newHarness(t)
		h.basic(1, 1)
		t0 := h.now
		if h.f.NowMs() != t0 {
			t.Fatalf("NowMs %d, want %d", h.f.NowMs(), t0)
		}
		h.now = t0 - 50_000
		mark := h.f.LastEventSeq()
		r := h.consult("m1", "b")
		if h.f.NowMs() != t0 {
			t.Fatalf("NowMs %d after an earlier command, want %d", h.f.NowMs(), t0)
		}
		s := specSession(h, "m1", r.SessionId)
		if s.CreatedMs != t0 || s.AssignedMs != t0 || s.LastActivityMs != t0 {
			t.Fatalf("session times %d/%d/%d, want %d", s.CreatedMs, s.AssignedMs, s.LastActivityMs, t0)
		}
		evs, _, _, _ := h.f.Events("", mark, 10)
		if len(evs) != 1 || evs[0].TimeMs != t0 {
			t.Fatalf("events %v: want one stamped %d", evs, t0)
		}
		h.now = t0 + 7
		h.tick()
		if h.f.NowMs() != t0+7 {
			t.Fatalf("NowMs %d, want %d", h.f.NowMs(), t0+7)
		}
	})

	t.Run("timeouts fire from command times only", func(t *testing.T) {
		h := newHarness(t)
		specMerchant(h, "m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", IdleTimeoutMs: 10_000}, "g1")
		h.agent("m1", "a0", 2, "g1")
		t0 := h.now
		r := h.consult("m1", "b")
		h.now = t0 + 9_999
		h.tick()
		specCheckSession(h, "m1", r.SessionId, specAssigned("a0", "g1"))
		// Time moves with any command, but only a tick fires timers.
		h.now = t0 + 20_000
		h.group("m1", "g2", pb.GroupMode_GROUP_MODE_PUSH)
		if h.f.NowMs() != t0+20_000 {
			t.Fatalf("NowMs %d, want %d", h.f.NowMs(), t0+20_000)
		}
		specCheckSession(h, "m1", r.SessionId, specAssigned("a0", "g1"))
		// A tick stamped earlier runs at the state machine's time.
		h.now = t0 + 1
		h.tick()
		s := specCheckSession(h, "m1", r.SessionId, specEnded("a0", "g1", pb.EndReason_END_REASON_IDLE_TIMEOUT))
		if s.EndedMs != t0+20_000 {
			t.Fatalf("ended at %d, want %d", s.EndedMs, t0+20_000)
		}
	})

	t.Run("same entries, same state", func(t *testing.T) {
		a, b := New(Config{Shard: 3}), New(Config{Shard: 3})
		entries, results := specScript(t, a)
		var mid []byte
		c := New(Config{Shard: 3})
		for i, e := range entries {
			got := b.ApplyEntry(uint64(i+1), e)
			for j := range got {
				if !proto.Equal(got[j], results[i][j]) {
					t.Fatalf("entry %d command %d: %v, want %v", i+1, j, got[j], results[i][j])
				}
			}
			if i == len(entries)/2 {
				var buf bytes.Buffer
				if err := b.WriteSnapshot(&buf); err != nil {
					t.Fatal(err)
				}
				mid = buf.Bytes()
				if err := c.ReadSnapshot(bytes.NewReader(mid)); err != nil {
					t.Fatal(err)
				}
			} else if i > len(entries)/2 {
				got := c.ApplyEntry(uint64(i+1), e)
				for j := range got {
					if !proto.Equal(got[j], results[i][j]) {
						t.Fatalf("restored replica, entry %d command %d: %v, want %v", i+1, j, got[j], results[i][j])
					}
				}
			}
		}
		sa, sb, sc := specSnapshot(t, a), specSnapshot(t, b), specSnapshot(t, c)
		if !bytes.Equal(sa, sb) {
			t.Fatal("two replicas fed the same entries have different snapshots")
		}
		if !bytes.Equal(sa, sc) {
			t.Fatal("a replica restored mid-way has a different snapshot")
		}
		if a.NowMs() != b.NowMs() || a.LastEventSeq() != b.LastEventSeq() || a.LastEventSeq() == 0 {
			t.Fatalf("now %d/%d events %d/%d", a.NowMs(), b.NowMs(), a.LastEventSeq(), b.LastEventSeq())
		}
		ea, _, _, _ := a.Events("", 0, 1<<30)
		eb, _, _, _ := b.Events("", 0, 1<<30)
		if len(ea) != len(eb) {
			t.Fatalf("%d events against %d", len(ea), len(eb))
		}
		for i := range ea {
			if !proto.Equal(ea[i], eb[i]) {
				t.Fatalf("event %d: %v against %v", i, ea[i], eb[i])
			}
		}
	})
}

// specRestore returns a new replica restored from f's snapshot.
func specRestore(t *testing.T, f *FSM) *FSM {
	t.Helper()
	r := New(Config{Shard: f.cfg.Shard})
	if err := r.ReadSnapshot(bytes.NewReader(specSnapshot(t, f))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !bytes.Equal(specSnapshot(t, r), specSnapshot(t, f)) {
		t.Fatal("the restored replica's snapshot differs from the original's")
	}
	return r
}

func specSnapshot(t *testing.T, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// specScript generates a log against f (so that commands name real sessions)
// with times that jump back and forth, batches, timeouts, surges, requeues
// and retries, and returns the entries with f's results.
func specScript(t *testing.T, f *FSM) ([]*pb.Entry, [][]*pb.Result) {
	b := newHarness(t) // a command builder only: its FSM is unused
	rng := rand.New(rand.NewPCG(99, 1))
	var entries []*pb.Entry
	var results [][]*pb.Result
	var sessions []string
	apply := func(cmds ...*pb.Command) {
		e := &pb.Entry{Version: EntryVersion, Commands: cmds}
		rs := f.ApplyEntry(uint64(len(entries)+1), e)
		entries = append(entries, e)
		results = append(results, rs)
		for _, r := range rs {
			if r.SessionId != "" {
				sessions = append(sessions, r.SessionId)
			}
		}
	}
	for _, m := range []string{"m1", "m2"} {
		apply(b.cmd(&pb.UpsertMerchant{MerchantId: m}),
			b.cmd(&pb.UpsertGroup{MerchantId: m, GroupId: "g2"}),
			b.cmd(&pb.UpsertGroup{MerchantId: m, GroupId: "g1", OverflowGroupId: "g2"}),
			b.cmd(&pb.UpsertGroup{MerchantId: m, GroupId: "p", Mode: pb.GroupMode_GROUP_MODE_PULL}))
		apply(b.cmd(&pb.UpsertMerchant{MerchantId: m, Settings: &pb.MerchantSettings{
			QueueEnabled: true, MaxQueueLength: 6, MaxWaitMs: 8000, IdleTimeoutMs: 15_000, BotFirst: m == "m2",
			SurgeBaselinePerMinute: 3, DefaultGroupId: "g1", RequeueOnOffline: m == "m1",
			Rules: []*pb.RoutingRule{{GroupId: "p", Category: "pull"}, {GroupId: "g2", MinUserLevel: 7}},
		}}))
		for i := 0; i < 4; i++ {
			a := "a" + strconv.Itoa(i)
			apply(b.cmd(&pb.UpsertAgent{MerchantId: m, AgentId: a, Limit: uint32(1 + i%2), Rating: uint32(100 * i),
				Groups: []*pb.AgentGroup{{GroupId: []string{"g1", "g2", "p", "g1"}[i], Skill: uint32(20 * i),
					QuestionSkills: []*pb.QuestionSkill{{QuestionType: "refund", Skill: uint32(90 - 20*i)}}}}}),
				b.cmd(&pb.SetAgentStatus{MerchantId: m, AgentId: a, Status: pb.AgentStatus_AGENT_STATUS_ONLINE}))
		}
	}
	pick := func() string {
		if len(sessions) == 0 {
			return "none"
		}
		return sessions[rng.IntN(len(sessions))]
	}
	var last *pb.Command
	for step := 0; step < 600; step++ {
		b.now += int64(rng.IntN(3000)) - 800 // sometimes backwards
		var cmds []*pb.Command
		for k := 1 + rng.IntN(3); k > 0; k-- {
			m := []string{"m1", "m2"}[rng.IntN(2)]
			var body any
			switch p := rng.IntN(100); {
			case p < 40:
				body = &pb.Consult{MerchantId: m, BuyerId: "b" + strconv.Itoa(rng.IntN(30)), UserLevel: uint32(rng.IntN(11)),
					QuestionType: []string{"", "refund"}[rng.IntN(2)], Category: []string{"", "", "pull"}[rng.IntN(3)],
					PreferredAgentId: []string{"", "", "a1"}[rng.IntN(3)]}
			case p < 50:
				body = &pb.Escalate{MerchantId: m, SessionId: pick()}
			case p < 60:
				body = &pb.End{MerchantId: m, SessionId: pick(), Reason: pb.EndReason(1 + rng.IntN(3))}
			case p < 66:
				if rng.IntN(2) == 0 {
					body = &pb.Transfer{MerchantId: m, SessionId: pick(), ToAgentId: "a" + strconv.Itoa(rng.IntN(4))}
				} else {
					body = &pb.Transfer{MerchantId: m, SessionId: pick(), ToGroupId: []string{"g1", "g2", "p"}[rng.IntN(3)]}
				}
			case p < 70:
				body = &pb.FirstReply{MerchantId: m, SessionId: pick()}
			case p < 76:
				body = &pb.PullNext{MerchantId: m, AgentId: "a2"}
			case p < 83:
				body = &pb.SetAgentStatus{MerchantId: m, AgentId: "a" + strconv.Itoa(rng.IntN(4)), Status: pb.AgentStatus(1 + rng.IntN(3))}
			case p < 86:
				body = &pb.UpsertAgent{MerchantId: m, AgentId: "a" + strconv.Itoa(rng.IntN(4)), Limit: uint32(rng.IntN(4)),
					Groups: []*pb.AgentGroup{{GroupId: "g1", Skill: uint32(rng.IntN(101))}}}
			default:
				body = &pb.Tick{}
			}
			c := b.cmd(body)
			if last != nil && rng.IntN(20) == 0 {
				c = proto.CloneOf(last) // a retry
			}
			last = c
			cmds = append(cmds, c)
		}
		apply(cmds...)
	}
	return entries, results
}

// ---------------------------------------------------------------------------
// Validation

func TestValidation(t *testing.T) {
	long := specLong(MaxIDLen + 1)
	attrs := func(n int) []*pb.Attribute {
		var out []*pb.Attribute
		for i := 0; i < n; i++ {
			out = append(out, &pb.Attribute{Key: "k" + strconv.Itoa(i), Value: "v"})
		}
		return out
	}
	groups := func(n int) []*pb.AgentGroup {
		var out []*pb.AgentGroup
		for i := 0; i < n; i++ {
			out = append(out, &pb.AgentGroup{GroupId: "g" + strconv.Itoa(i)})
		}
		return out
	}
	qskills := func(n int) []*pb.QuestionSkill {
		var out []*pb.QuestionSkill
		for i := 0; i < n; i++ {
			out = append(out, &pb.QuestionSkill{QuestionType: "q" + strconv.Itoa(i)})
		}
		return out
	}
	rules := func(n int) []*pb.RoutingRule {
		var out []*pb.RoutingRule
		for i := 0; i < n; i++ {
			out = append(out, &pb.RoutingRule{GroupId: "g1"})
		}
		return out
	}
	ms := func(s *pb.MerchantSettings) *pb.UpsertMerchant {
		return &pb.UpsertMerchant{MerchantId: "m1", Settings: s}
	}
	ua := func(mod func(a *pb.UpsertAgent)) *pb.UpsertAgent {
		a := &pb.UpsertAgent{MerchantId: "m1", AgentId: "a0", Limit: 1, Groups: []*pb.AgentGroup{{GroupId: "g1"}}}
		mod(a)
		return a
	}
	co := func(mod func(c *pb.Consult)) *pb.Consult {
		c := &pb.Consult{MerchantId: "m1", BuyerId: "new"}
		mod(c)
		return c
	}
	cases := []struct {
		name  string
		body  any
		field string
	}{
		// empty and over-long ids
		{"merchant id empty", &pb.UpsertMerchant{}, "merchant_id"},
		{"merchant id 129 bytes", &pb.UpsertMerchant{MerchantId: long}, "merchant_id"},
		{"delete merchant id empty", &pb.DeleteMerchant{}, "merchant_id"},
		{"group id empty", &pb.UpsertGroup{MerchantId: "m1"}, "group_id"},
		{"group id 129 bytes", &pb.UpsertGroup{MerchantId: "m1", GroupId: long}, "group_id"},
		{"group merchant empty", &pb.UpsertGroup{GroupId: "g9"}, "merchant_id"},
		{"overflow group 129 bytes", &pb.UpsertGroup{MerchantId: "m1", GroupId: "g9", OverflowGroupId: long}, "overflow_group_id"},
		{"overflow into itself", &pb.UpsertGroup{MerchantId: "m1", GroupId: "g1", OverflowGroupId: "g1"}, "overflow_group_id"},
		{"delete group id empty", &pb.DeleteGroup{MerchantId: "m1"}, "group_id"},
		{"agent id empty", ua(func(a *pb.UpsertAgent) { a.AgentId = "" }), "agent_id"},
		{"agent id 129 bytes", ua(func(a *pb.UpsertAgent) { a.AgentId = long }), "agent_id"},
		{"agent group id empty", ua(func(a *pb.UpsertAgent) { a.Groups[0].GroupId = "" }), "groups.group_id"},
		{"agent group id 129 bytes", ua(func(a *pb.UpsertAgent) { a.Groups[0].GroupId = long }), "groups.group_id"},
		{"agent group listed twice", ua(func(a *pb.UpsertAgent) { a.Groups = append(a.Groups, &pb.AgentGroup{GroupId: "g1"}) }), "groups.group_id"},
		{"question type empty", ua(func(a *pb.UpsertAgent) { a.Groups[0].QuestionSkills = []*pb.QuestionSkill{{}} }), "groups.question_skills.question_type"},
		{"question type listed twice", ua(func(a *pb.UpsertAgent) { a.Groups[0].QuestionSkills = append(qskills(1), qskills(1)...) }), "groups.question_skills.question_type"},
		{"delete agent id empty", &pb.DeleteAgent{MerchantId: "m1"}, "agent_id"},
		{"status agent id 129 bytes", &pb.SetAgentStatus{MerchantId: "m1", AgentId: long, Status: pb.AgentStatus_AGENT_STATUS_ONLINE}, "agent_id"},
		{"consult merchant empty", co(func(c *pb.Consult) { c.MerchantId = "" }), "merchant_id"},
		{"consult buyer empty", co(func(c *pb.Consult) { c.BuyerId = "" }), "buyer_id"},
		{"consult buyer 129 bytes", co(func(c *pb.Consult) { c.BuyerId = long }), "buyer_id"},
		{"consult category 129 bytes", co(func(c *pb.Consult) { c.Category = long }), "category"},
		{"consult region 129 bytes", co(func(c *pb.Consult) { c.Region = long }), "region"},
		{"consult question type 129 bytes", co(func(c *pb.Consult) { c.QuestionType = long }), "question_type"},
		{"consult preferred agent 129 bytes", co(func(c *pb.Consult) { c.PreferredAgentId = long }), "preferred_agent_id"},
		{"consult attribute key empty", co(func(c *pb.Consult) { c.Attributes = []*pb.Attribute{{Value: "v"}} }), "attributes.key"},
		{"consult attribute key 129 bytes", co(func(c *pb.Consult) { c.Attributes = []*pb.Attribute{{Key: long}} }), "attributes.key"},
		{"consult attribute value 129 bytes", co(func(c *pb.Consult) { c.Attributes = []*pb.Attribute{{Key: "k", Value: long}} }), "attributes.value"},
		{"33 attributes", co(func(c *pb.Consult) { c.Attributes = attrs(MaxAttributes + 1) }), "attributes"},
		{"escalate session empty", &pb.Escalate{MerchantId: "m1"}, "session_id"},
		{"transfer session empty", &pb.Transfer{MerchantId: "m1", ToGroupId: "g1"}, "session_id"},
		{"transfer to agent 129 bytes", &pb.Transfer{MerchantId: "m1", SessionId: "s", ToAgentId: long}, "to_agent_id"},
		{"transfer to group 129 bytes", &pb.Transfer{MerchantId: "m1", SessionId: "s", ToGroupId: long}, "to_group_id"},
		{"transfer to agent and group", &pb.Transfer{MerchantId: "m1", SessionId: "s", ToAgentId: "a0", ToGroupId: "g1"}, "to_agent_id"},
		{"transfer to neither", &pb.Transfer{MerchantId: "m1", SessionId: "s"}, "to_agent_id"},
		{"end session empty", &pb.End{MerchantId: "m1", Reason: pb.EndReason_END_REASON_AGENT_ENDED}, "session_id"},
		{"first reply session empty", &pb.FirstReply{MerchantId: "m1"}, "session_id"},
		{"first reply merchant 129 bytes", &pb.FirstReply{MerchantId: long, SessionId: "s"}, "merchant_id"},
		{"pull next agent empty", &pb.PullNext{MerchantId: "m1"}, "agent_id"},
		// unknown enum values
		{"group mode unknown", &pb.UpsertGroup{MerchantId: "m1", GroupId: "g9", Mode: 3}, "mode"},
		{"agent status unspecified", &pb.SetAgentStatus{MerchantId: "m1", AgentId: "a0"}, "status"},
		{"agent status unknown", &pb.SetAgentStatus{MerchantId: "m1", AgentId: "a0", Status: 4}, "status"},
		{"page source unknown", co(func(c *pb.Consult) { c.PageSource = 5 }), "page_source"},
		{"page source negative", co(func(c *pb.Consult) { c.PageSource = -1 }), "page_source"},
		{"rule page source unknown", ms(&pb.MerchantSettings{Rules: []*pb.RoutingRule{{GroupId: "g1", PageSource: 9}}}), "settings.rules.page_source"},
		{"end reason unspecified", &pb.End{MerchantId: "m1", SessionId: "s"}, "reason"},
		{"end reason idle timeout (the machine's own)", &pb.End{MerchantId: "m1", SessionId: "s", Reason: pb.EndReason_END_REASON_IDLE_TIMEOUT}, "reason"},
		{"end reason abandoned", &pb.End{MerchantId: "m1", SessionId: "s", Reason: pb.EndReason_END_REASON_ABANDONED}, "reason"},
		{"end reason transferred", &pb.End{MerchantId: "m1", SessionId: "s", Reason: pb.EndReason_END_REASON_TRANSFERRED}, "reason"},
		{"end reason merchant deleted", &pb.End{MerchantId: "m1", SessionId: "s", Reason: pb.EndReason_END_REASON_MERCHANT_DELETED}, "reason"},
		{"end reason unknown", &pb.End{MerchantId: "m1", SessionId: "s", Reason: 99}, "reason"},
		// numbers out of range
		{"limit over max", ua(func(a *pb.UpsertAgent) { a.Limit = MaxLimit + 1 }), "limit"},
		{"weight over max", ua(func(a *pb.UpsertAgent) { a.Weight = MaxWeight + 1 }), "weight"},
		{"rating over max", ua(func(a *pb.UpsertAgent) { a.Rating = MaxRating + 1 }), "rating"},
		{"group skill over max", ua(func(a *pb.UpsertAgent) { a.Groups[0].Skill = MaxSkill + 1 }), "groups.skill"},
		{"question skill over max", ua(func(a *pb.UpsertAgent) {
			a.Groups[0].QuestionSkills = []*pb.QuestionSkill{{QuestionType: "q", Skill: MaxSkill + 1}}
		}), "groups.question_skills.skill"},
		{"65 agent groups", ua(func(a *pb.UpsertAgent) { a.Groups = groups(MaxAgentGroups + 1) }), "groups"},
		{"33 question skills", ua(func(a *pb.UpsertAgent) { a.Groups[0].QuestionSkills = qskills(MaxQuestionSkills + 1) }), "groups.question_skills"},
		{"user level over max", co(func(c *pb.Consult) { c.UserLevel = MaxUserLevel + 1 }), "user_level"},
		{"max queue length over max", ms(&pb.MerchantSettings{MaxQueueLength: MaxQueueLength + 1}), "settings.max_queue_length"},
		{"default limit over max", ms(&pb.MerchantSettings{DefaultLimit: MaxLimit + 1}), "settings.default_limit"},
		{"default group 129 bytes", ms(&pb.MerchantSettings{DefaultGroupId: long}), "settings.default_group_id"},
		{"max wait negative", ms(&pb.MerchantSettings{MaxWaitMs: -1}), "settings.max_wait_ms"},
		{"max wait over max", ms(&pb.MerchantSettings{MaxWaitMs: MaxDurationMs + 1}), "settings.max_wait_ms"},
		{"idle timeout negative", ms(&pb.MerchantSettings{IdleTimeoutMs: -1}), "settings.idle_timeout_ms"},
		{"idle timeout over max", ms(&pb.MerchantSettings{IdleTimeoutMs: MaxDurationMs + 1}), "settings.idle_timeout_ms"},
		{"skill weight over max", ms(&pb.MerchantSettings{Weights: &pb.ScoringWeights{Skill: MaxScoringWeight + 1}}), "settings.weights.skill"},
		{"headroom weight over max", ms(&pb.MerchantSettings{Weights: &pb.ScoringWeights{Headroom: MaxScoringWeight + 1}}), "settings.weights.headroom"},
		{"rating weight over max", ms(&pb.MerchantSettings{Weights: &pb.ScoringWeights{Rating: MaxScoringWeight + 1}}), "settings.weights.rating"},
		{"weight weight over max", ms(&pb.MerchantSettings{Weights: &pb.ScoringWeights{Weight: MaxScoringWeight + 1}}), "settings.weights.weight"},
		{"user level weight over max", ms(&pb.MerchantSettings{Weights: &pb.ScoringWeights{UserLevel: MaxScoringWeight + 1}}), "settings.weights.user_level"},
		{"aging over max", ms(&pb.MerchantSettings{Weights: &pb.ScoringWeights{AgingMs: MaxAgingMs + 1}}), "settings.weights.aging_ms"},
		{"65 rules", ms(&pb.MerchantSettings{Rules: rules(MaxRules + 1)}), "settings.rules"},
		{"rule group empty", ms(&pb.MerchantSettings{Rules: []*pb.RoutingRule{{}}}), "settings.rules.group_id"},
		{"rule category 129 bytes", ms(&pb.MerchantSettings{Rules: []*pb.RoutingRule{{GroupId: "g1", Category: long}}}), "settings.rules.category"},
		{"rule region 129 bytes", ms(&pb.MerchantSettings{Rules: []*pb.RoutingRule{{GroupId: "g1", Region: long}}}), "settings.rules.region"},
		{"rule question type 129 bytes", ms(&pb.MerchantSettings{Rules: []*pb.RoutingRule{{GroupId: "g1", QuestionType: long}}}), "settings.rules.question_type"},
		{"rule min user level over max", ms(&pb.MerchantSettings{Rules: []*pb.RoutingRule{{GroupId: "g1", MinUserLevel: MaxUserLevel + 1}}}), "settings.rules.min_user_level"},
		{"rule attribute key 129 bytes", ms(&pb.MerchantSettings{Rules: []*pb.RoutingRule{{GroupId: "g1", AttributeKey: long}}}), "settings.rules.attribute_key"},
		{"rule attribute value 129 bytes", ms(&pb.MerchantSettings{Rules: []*pb.RoutingRule{{GroupId: "g1", AttributeKey: "k", AttributeValue: long}}}), "settings.rules.attribute_value"},
	}
	h := newHarness(t)
	h.basic(1, 1)
	h.consult("m1", "b0")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.advance(1000) // a failed command does not move time either
			specFails(h, tc.body, ErrInvalid, tc.field)
		})
	}
	h.t = t

	t.Run("command envelope", func(t *testing.T) {
		h.t = t
		defer func() { h.t = t }()
		c := h.cmd(&pb.Consult{MerchantId: "m1", BuyerId: "new"})
		c.RequestId = ""
		specFailsCmd(h, c, ErrInvalid, "request_id")
		c.RequestId = long
		specFailsCmd(h, c, ErrInvalid, "request_id")
		c = h.cmd(&pb.Consult{MerchantId: "m1", BuyerId: "new"})
		c.TimeUnixMs = MaxTimeMs + 1
		specFailsCmd(h, c, ErrInvalid, "time_unix_ms")
		c = h.cmd(&pb.Tick{})
		c.Body = nil
		specFailsCmd(h, c, ErrUnknownCommand, "body")
		// A tick may come without a request id.
		tick := h.cmd(&pb.Tick{})
		tick.RequestId = ""
		if err := ResultError(h.apply(tick)[0]); err != nil {
			t.Fatalf("tick without request id: %v", err)
		}
	})

	t.Run("values at the limits are accepted", func(t *testing.T) {
		h := newHarness(t)
		id := specLong(MaxIDLen)
		specMerchant(h, id, &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: id, MaxQueueLength: MaxQueueLength,
			DefaultLimit: MaxLimit, MaxWaitMs: MaxDurationMs, IdleTimeoutMs: MaxDurationMs,
			Weights: &pb.ScoringWeights{Skill: MaxScoringWeight, Headroom: MaxScoringWeight, Rating: MaxScoringWeight,
				Weight: MaxScoringWeight, UserLevel: MaxScoringWeight, AgingMs: MaxAgingMs},
		}, id)
		h.ok(&pb.UpsertAgent{MerchantId: id, AgentId: id, Limit: MaxLimit, Weight: MaxWeight, Rating: MaxRating,
			Groups: []*pb.AgentGroup{{GroupId: id, Skill: MaxSkill, QuestionSkills: qskills(MaxQuestionSkills)}}})
		specStatus(h, id, id, pb.AgentStatus_AGENT_STATUS_ONLINE)
		as := attrs(MaxAttributes)
		as[0] = &pb.Attribute{Key: id, Value: id}
		c := h.cmd(&pb.Consult{MerchantId: id, BuyerId: id, UserLevel: MaxUserLevel, Category: id, Region: id,
			QuestionType: id, PreferredAgentId: id, Attributes: as, PageSource: pb.PageSource_PAGE_SOURCE_ORDER})
		c.RequestId = id
		r := h.apply(c)[0]
		specCheckResult(t, r, pb.Outcome_OUTCOME_ASSIGNED, specAssigned(id, id), 0)
	})
}
