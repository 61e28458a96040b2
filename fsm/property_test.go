package fsm

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

var (
	flagSeed  = flag.Uint64("fsm.seed", 0, "run the randomized fsm tests for this seed only")
	flagSeqs  = flag.Int("fsm.seqs", 0, "number of random sequences (default 200, 20 with -short)")
	flagSteps = flag.Int("fsm.steps", 0, "steps per random sequence (default 300)")
)

// propSeeds returns the seeds of the randomized tests: 1..n by default, or
// the one given with -fsm.seed.
func propSeeds(n int) []uint64 {
	if *flagSeed != 0 {
		return []uint64{*flagSeed}
	}
	if *flagSeqs > 0 {
		n = *flagSeqs
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}

func propSteps(def int) int {
	if *flagSteps > 0 {
		return *flagSteps
	}
	return def
}

// propConfig sizes the state machine of a random sequence: odd seeds get
// small bounds so the ended ring and the dedup table wrap and expire.
func propConfig(seed uint64) Config {
	c := Config{Shard: 1, MaxEvents: 512}
	if seed%2 == 1 {
		c.MaxEnded, c.MaxDedup, c.DedupWindowMs = 16, 40, 60_000
	}
	return c
}

// TestProperty applies random command sequences and checks every invariant
// after every step; see propRun.step for the per-step checks.
func TestProperty(t *testing.T) {
	seqs, steps := 200, 300
	if testing.Short() {
		seqs = 20
	}
	steps = propSteps(steps)
	start := time.Now()
	var stats genStats
	for _, seed := range propSeeds(seqs) {
		p := newPropRun(t, seed)
		for i := 0; i < steps; i++ {
			p.step()
		}
		stats.add(p.stats)
	}
	t.Logf("%d sequences x %d steps in %v: %s", len(propSeeds(seqs)), steps, time.Since(start).Round(time.Millisecond), stats)
}

// ---------------------------------------------------------------------------
// The generator.

var (
	genMerchants  = []string{"m0", "m1", "m2"}
	genGroups     = []string{"g0", "g1", "g2", "g3"}
	genAgents     = []string{"a0", "a1", "a2", "a3", "a4", "a5"}
	genQTypes     = []string{"", "refund", "size", "ship"}
	genCategories = []string{"", "shoes", "phones"}
	genRegions    = []string{"", "north", "south"}
)

const genBuyers = 14

// gen produces random but realistic command logs for one shard: a few
// merchants with push and pull groups, overflow chains and small queues,
// agents with small limits going online and offline, buyers (many of them
// repeat buyers) consulting, escalating, being transferred and leaving,
// ticks with time advancing, retries of earlier commands, and invalid
// commands. It peeks at the state machine to pick sessions and agents that
// exist, so most commands are meaningful.
type gen struct {
	r       *rand.Rand
	now     int64
	index   uint64
	reqs    int
	pending []*pb.Command   // setup commands still to be proposed one by one
	done    []sentCmd       // successful commands, for retries
	puts    int             // successful commands with a request id so far
	setups  map[string]bool // merchants set up at least once
	f       *FSM            // the state the entry being generated is for
}

// sentCmd is a command that succeeded, with a copy of its result.
type sentCmd struct {
	cmd    *pb.Command
	res    *pb.Result
	put    int   // its number among successful commands with a request id
	timeMs int64 // the log time it was applied at
}

// genEntry is one generated log entry.
type genEntry struct {
	kind    string
	index   uint64
	e       *pb.Entry
	replays map[int]int // command position -> position in gen.done it retries
	invalid bool        // every command must fail validation
	config  bool        // the entry changes configuration (limits may move)
}

func newGen(seed uint64) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, seed)), now: 1_700_000_000_000, setups: map[string]bool{}}
}

func pick[T any](g *gen, xs ...T) T { return xs[g.r.IntN(len(xs))] }

func (g *gen) chance(pct int) bool { return g.r.IntN(100) < pct }

func (g *gen) command(body any) *pb.Command {
	g.reqs++
	c := &pb.Command{RequestId: "q" + strconv.Itoa(g.reqs), TimeUnixMs: g.now}
	if g.chance(5) {
		c.TimeUnixMs = g.now - int64(g.r.IntN(10_000)) // a leader whose clock is behind
	}
	setBody(c, body)
	return c
}

// setBody sets a command's body from a body message (nil: no body).
func setBody(c *pb.Command, body any) {
	if body == nil {
		return
	}
	n, err := NewCommand(c.RequestId, body)
	if err != nil {
		panic(err)
	}
	c.Body = n.Body
}

func (g *gen) entry(kind string, cmds ...*pb.Command) *genEntry {
	return &genEntry{kind: kind, index: g.index, e: &pb.Entry{Version: EntryVersion, Commands: cmds}}
}

// next generates the next entry against the current state of f.
func (g *gen) next(f *FSM) *genEntry {
	g.f = f
	g.index++
	g.now += int64(g.r.IntN(1500))
	if len(g.pending) > 0 {
		c := g.pending[0]
		g.pending = g.pending[1:]
		c.TimeUnixMs = g.now
		ge := g.entry("setup", c)
		ge.config = true
		return ge
	}
	mid := pick(g, genMerchants...)
	m := f.merchants[mid]
	if m == nil {
		cmds := g.setupMerchant(mid)
		if g.chance(50) {
			ge := g.entry("setup "+mid+" in one entry", cmds...)
			ge.config = true
			return ge
		}
		g.pending = cmds[1:]
		ge := g.entry("setup "+mid, cmds[0])
		ge.config = true
		return ge
	}
	roll := g.r.IntN(1000)
	switch {
	case roll < 230:
		return g.entry("consult", g.consult(m))
	case roll < 290:
		return g.entry("escalate", g.escalate(m))
	case roll < 350:
		return g.entry("transfer", g.transfer(m))
	case roll < 460:
		return g.entry("end", g.end(m))
	case roll < 500:
		return g.entry("first reply", g.firstReply(m))
	case roll < 550:
		return g.entry("pull next", g.command(&pb.PullNext{MerchantId: m.id, AgentId: g.agentID(m)}))
	case roll < 600:
		return g.configEntry("limit change", g.limitChange(m))
	case roll < 680:
		return g.entry("agent status", g.status(m))
	case roll < 700:
		return g.configEntry("upsert agent", g.command(g.agentCfg(m.id, g.agentID(m), sortedKeys(m.groups))))
	case roll < 710:
		return g.configEntry("delete agent", g.command(&pb.DeleteAgent{MerchantId: m.id, AgentId: g.agentID(m)}))
	case roll < 730:
		return g.configEntry("upsert group", g.upsertGroup(m))
	case roll < 740:
		return g.configEntry("delete group", g.command(&pb.DeleteGroup{MerchantId: m.id, GroupId: pick(g, append(genGroups, "g4")...)}))
	case roll < 760:
		return g.configEntry("upsert merchant", g.command(&pb.UpsertMerchant{MerchantId: m.id, Settings: g.settings(sortedKeys(m.groups))}))
	case roll < 765:
		return g.configEntry("delete merchant", g.command(&pb.DeleteMerchant{MerchantId: m.id}))
	case roll < 850:
		return g.entry("tick", g.tick())
	case roll < 900:
		if c, i, ok := g.retry(f); ok {
			ge := g.entry("retry", c)
			ge.replays = map[int]int{0: i}
			return ge
		}
		return g.entry("tick", g.tick())
	case roll < 970:
		return g.multi(f, m)
	default:
		ge := g.entry("invalid", g.invalidCommand(m))
		ge.invalid = true
		return ge
	}
}

func (g *gen) configEntry(kind string, c *pb.Command) *genEntry {
	ge := g.entry(kind, c)
	ge.config = true
	return ge
}

// multi is an entry of several session commands, optionally starting with
// a retry. It has no configuration commands, so no limit moves inside it.
func (g *gen) multi(f *FSM, m *merchant) *genEntry {
	ge := g.entry("multi")
	if c, i, ok := g.retry(f); ok && g.chance(30) {
		ge.e.Commands = append(ge.e.Commands, c)
		ge.replays = map[int]int{0: i}
	}
	for n := 2 + g.r.IntN(3); n > 0; n-- {
		var c *pb.Command
		switch g.r.IntN(8) {
		case 0, 1:
			c = g.consult(m)
		case 2:
			c = g.escalate(m)
		case 3:
			c = g.transfer(m)
		case 4:
			c = g.end(m)
		case 5:
			c = g.command(&pb.PullNext{MerchantId: m.id, AgentId: g.agentID(m)})
		case 6:
			c = g.status(m)
		default:
			c = g.tick()
		}
		ge.e.Commands = append(ge.e.Commands, c)
	}
	return ge
}

// observe records an entry's successful commands for later retries; now0
// is the log time before the entry.
func (g *gen) observe(ge *genEntry, results []*pb.Result, now0 int64) {
	now := now0
	for i, c := range ge.e.Commands {
		_, retry := ge.replays[i]
		if retry || results[i].Error != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
			continue // changed nothing, not even log time
		}
		now = max(now, c.TimeUnixMs)
		if c.RequestId == "" {
			continue
		}
		g.done = append(g.done, sentCmd{cmd: c, res: proto.CloneOf(results[i]), put: g.puts, timeMs: now})
		g.puts++
	}
	if len(g.done) > 400 {
		g.done = append(g.done[:0:0], g.done[len(g.done)-200:]...)
	}
}

// retry picks an earlier successful command that the state machine must
// still remember by its contract (Config): one applied less than
// DedupWindowMs of log time ago and fewer than MaxDedup/2 commands with
// request ids ago. Applied again, it must return the same result and
// change nothing.
func (g *gen) retry(f *FSM) (*pb.Command, int, bool) {
	if len(g.done) == 0 {
		return nil, 0, false
	}
	start := g.r.IntN(len(g.done))
	for k := 0; k < len(g.done); k++ {
		i := (start + k) % len(g.done)
		if d := g.done[i]; f.now-d.timeMs <= f.cfg.DedupWindowMs && g.puts-d.put-1 < f.cfg.MaxDedup/2-1 {
			return d.cmd, i, true
		}
	}
	return nil, 0, false
}

func (g *gen) tick() *pb.Command {
	g.now += int64(g.r.IntN(20_000))
	if g.chance(10) {
		g.now += int64(g.r.IntN(120_000))
	}
	c := g.command(&pb.Tick{})
	if !g.chance(10) {
		c.RequestId = "" // ticks are the leader's own and usually carry none
	}
	return c
}

// setupMerchant creates a merchant with groups, settings, agents and their
// statuses.
func (g *gen) setupMerchant(mid string) []*pb.Command {
	g.setups[mid] = true
	cmds := []*pb.Command{g.command(&pb.UpsertMerchant{MerchantId: mid})}
	var groups []string
	for i, gid := range genGroups {
		ug := &pb.UpsertGroup{MerchantId: mid, GroupId: gid}
		if i > 0 {
			ug.Mode = pick(g, pb.GroupMode_GROUP_MODE_UNSPECIFIED, pb.GroupMode_GROUP_MODE_PUSH, pb.GroupMode_GROUP_MODE_PUSH, pb.GroupMode_GROUP_MODE_PULL)
			if g.chance(60) {
				ug.OverflowGroupId = pick(g, groups...)
			}
		}
		groups = append(groups, gid)
		cmds = append(cmds, g.command(ug))
	}
	cmds = append(cmds, g.command(&pb.UpsertMerchant{MerchantId: mid, Settings: g.settings(groups)}))
	var agents []string
	for _, aid := range genAgents {
		if g.chance(75) {
			agents = append(agents, aid)
			cmds = append(cmds, g.command(g.agentCfg(mid, aid, groups)))
		}
	}
	for _, aid := range agents {
		st := pick(g, pb.AgentStatus_AGENT_STATUS_ONLINE, pb.AgentStatus_AGENT_STATUS_ONLINE, pb.AgentStatus_AGENT_STATUS_ONLINE, pb.AgentStatus_AGENT_STATUS_AWAY, pb.AgentStatus_AGENT_STATUS_OFFLINE)
		cmds = append(cmds, g.command(&pb.SetAgentStatus{MerchantId: mid, AgentId: aid, Status: st}))
	}
	return cmds
}

// settings are random merchant settings over the given groups.
func (g *gen) settings(groups []string) *pb.MerchantSettings {
	s := &pb.MerchantSettings{
		QueueEnabled:           g.chance(85),
		MaxQueueLength:         pick[uint32](g, 0, 1, 2, 3, 3, 4),
		MaxWaitMs:              pick[int64](g, 0, 5_000, 15_000, 40_000),
		BotFirst:               g.chance(25),
		IdleTimeoutMs:          pick[int64](g, 0, 0, 30_000, 90_000),
		DefaultLimit:           pick[uint32](g, 0, 1, 2, 3),
		RequeueOnOffline:       g.chance(50),
		SurgeBaselinePerMinute: pick[uint32](g, 0, 0, 0, 1, 2),
	}
	if len(groups) > 0 {
		s.DefaultGroupId = groups[0]
		if g.chance(10) {
			s.DefaultGroupId = pick(g, groups...)
		}
	}
	if g.chance(5) {
		s.DefaultGroupId = "" // consults no rule matches fail
	}
	if g.chance(30) {
		s.Weights = &pb.ScoringWeights{
			Skill: uint32(g.r.IntN(101)), Headroom: uint32(g.r.IntN(101)), Rating: uint32(g.r.IntN(101)),
			Weight: uint32(g.r.IntN(101)), UserLevel: uint32(g.r.IntN(101)), AgingMs: pick[uint32](g, 0, 10, 1000, 60_000),
		}
	}
	for n := g.r.IntN(4); n > 0 && len(groups) > 0; n-- {
		r := &pb.RoutingRule{GroupId: pick(g, groups...)}
		switch g.r.IntN(6) {
		case 0:
			r.Category = pick(g, genCategories[1:]...)
		case 1:
			r.QuestionType = pick(g, genQTypes[1:]...)
		case 2:
			r.MinUserLevel = uint32(1 + g.r.IntN(10))
		case 3:
			r.PageSource = pb.PageSource(1 + g.r.IntN(4))
		case 4:
			r.AttributeKey, r.AttributeValue = "channel", pick(g, "", "app")
		default:
			r.Region = pick(g, genRegions[1:]...)
		}
		s.Rules = append(s.Rules, r)
	}
	if g.chance(3) {
		s.Rules = append(s.Rules, &pb.RoutingRule{GroupId: "g9"}) // unknown: not found
	}
	return s
}

// agentCfg is a random agent in one to three of the given groups.
func (g *gen) agentCfg(mid, aid string, groups []string) *pb.UpsertAgent {
	a := &pb.UpsertAgent{
		MerchantId: mid, AgentId: aid, Limit: pick[uint32](g, 0, 1, 1, 2, 2, 3),
		Weight: uint32(g.r.IntN(101)), Rating: uint32(g.r.IntN(501)),
	}
	gs := append([]string(nil), groups...)
	g.r.Shuffle(len(gs), func(i, j int) { gs[i], gs[j] = gs[j], gs[i] })
	n := 1 + g.r.IntN(3)
	if n > len(gs) {
		n = len(gs)
	}
	for _, gid := range gs[:n] {
		ag := &pb.AgentGroup{GroupId: gid, Skill: uint32(g.r.IntN(101))}
		for _, qt := range genQTypes[1:] {
			if g.chance(30) {
				ag.QuestionSkills = append(ag.QuestionSkills, &pb.QuestionSkill{QuestionType: qt, Skill: uint32(g.r.IntN(101))})
			}
		}
		a.Groups = append(a.Groups, ag)
	}
	if g.chance(3) {
		a.Groups = append(a.Groups, &pb.AgentGroup{GroupId: "g9"}) // unknown: not found
	}
	return a
}

// agentID is mostly an existing agent, sometimes any agent id.
func (g *gen) agentID(m *merchant) string {
	if ids := sortedKeys(m.agents); len(ids) > 0 && g.chance(90) {
		return pick(g, ids...)
	}
	return pick(g, append(genAgents, "a9")...)
}

// sessionID is mostly an active session in one of the states, sometimes
// any active session, an ended one or one that never existed.
func (g *gen) sessionID(m *merchant, states ...pb.SessionState) string {
	var match, all []string
	for _, id := range sortedKeys(m.sessions) {
		all = append(all, id)
		for _, st := range states {
			if m.sessions[id].State == st {
				match = append(match, id)
			}
		}
	}
	switch roll := g.r.IntN(100); {
	case roll < 85 && len(match) > 0:
		return pick(g, match...)
	case roll < 93 && len(all) > 0:
		return pick(g, all...)
	case roll < 97 && g.f.ended.len() > 0:
		if ids := endedIDs(g.f, m.id); len(ids) > 0 {
			return pick(g, ids...)
		}
	}
	return "1-999-9"
}

func (g *gen) consult(m *merchant) *pb.Command {
	c := &pb.Consult{
		MerchantId: m.id, BuyerId: "b" + strconv.Itoa(g.r.IntN(genBuyers)),
		PageSource: pb.PageSource(g.r.IntN(5)), Category: pick(g, genCategories...), Region: pick(g, genRegions...),
		QuestionType: pick(g, genQTypes...),
	}
	if g.chance(40) {
		c.UserLevel = uint32(1 + g.r.IntN(10))
	}
	if g.chance(25) {
		c.PreferredAgentId = pick(g, append(genAgents, "a9")...)
	}
	if g.chance(30) {
		c.Attributes = []*pb.Attribute{{Key: "channel", Value: pick(g, "app", "web")}}
	}
	return g.command(c)
}

func (g *gen) escalate(m *merchant) *pb.Command {
	return g.command(&pb.Escalate{MerchantId: m.id, SessionId: g.sessionID(m, pb.SessionState_SESSION_STATE_BOT)})
}

func (g *gen) transfer(m *merchant) *pb.Command {
	t := &pb.Transfer{MerchantId: m.id, SessionId: g.sessionID(m, pb.SessionState_SESSION_STATE_ASSIGNED, pb.SessionState_SESSION_STATE_QUEUED)}
	if g.chance(50) {
		t.ToAgentId = g.agentID(m)
	} else {
		t.ToGroupId = pick(g, append(genGroups, "g9")...)
	}
	return g.command(t)
}

func (g *gen) end(m *merchant) *pb.Command {
	e := &pb.End{MerchantId: m.id, SessionId: g.sessionID(m, pb.SessionState_SESSION_STATE_BOT, pb.SessionState_SESSION_STATE_QUEUED, pb.SessionState_SESSION_STATE_ASSIGNED)}
	e.Reason = pick(g, pb.EndReason_END_REASON_AGENT_ENDED, pb.EndReason_END_REASON_BUYER_LEFT)
	if s := m.sessions[e.SessionId]; (s != nil && s.State == pb.SessionState_SESSION_STATE_BOT && g.chance(70)) || g.chance(5) {
		e.Reason = pb.EndReason_END_REASON_BOT_RESOLVED
	}
	return g.command(e)
}

func (g *gen) firstReply(m *merchant) *pb.Command {
	return g.command(&pb.FirstReply{MerchantId: m.id, SessionId: g.sessionID(m, pb.SessionState_SESSION_STATE_ASSIGNED)})
}

func (g *gen) status(m *merchant) *pb.Command {
	st := pick(g, pb.AgentStatus_AGENT_STATUS_ONLINE, pb.AgentStatus_AGENT_STATUS_ONLINE, pb.AgentStatus_AGENT_STATUS_AWAY, pb.AgentStatus_AGENT_STATUS_OFFLINE, pb.AgentStatus_AGENT_STATUS_OFFLINE)
	return g.command(&pb.SetAgentStatus{MerchantId: m.id, AgentId: g.agentID(m), Status: st})
}

// limitChange re-sends an agent's configuration with another limit, up or
// down (0 is the merchant's default).
func (g *gen) limitChange(m *merchant) *pb.Command {
	aid := g.agentID(m)
	a := m.agents[aid]
	if a == nil {
		return g.command(g.agentCfg(m.id, aid, sortedKeys(m.groups)))
	}
	cfg := proto.CloneOf(a.cfg)
	for cfg.Limit == a.cfg.Limit {
		cfg.Limit = uint32(g.r.IntN(5))
	}
	return g.command(cfg)
}

func (g *gen) upsertGroup(m *merchant) *pb.Command {
	ug := &pb.UpsertGroup{MerchantId: m.id, GroupId: pick(g, append(genGroups, "g4")...),
		Mode: pick(g, pb.GroupMode_GROUP_MODE_PUSH, pb.GroupMode_GROUP_MODE_PULL, pb.GroupMode_GROUP_MODE_UNSPECIFIED)}
	if ids := sortedKeys(m.groups); g.chance(50) && len(ids) > 0 {
		ug.OverflowGroupId = pick(g, ids...) // sometimes itself: invalid
	}
	return g.command(ug)
}

// invalidCommand is a command that must fail validation.
func (g *gen) invalidCommand(m *merchant) *pb.Command {
	long := strings.Repeat("x", MaxIDLen+1)
	var c *pb.Command
	switch g.r.IntN(9) {
	case 0:
		c = g.consult(m)
		c.RequestId = ""
	case 1:
		c = g.command(&pb.UpsertAgent{MerchantId: m.id, AgentId: "a0", Limit: MaxLimit + 1})
	case 2:
		c = g.command(&pb.SetAgentStatus{MerchantId: m.id, AgentId: "a0"})
	case 3:
		c = g.command(&pb.Transfer{MerchantId: m.id, SessionId: g.sessionID(m), ToAgentId: "a0", ToGroupId: "g0"})
	case 4:
		c = g.command(&pb.End{MerchantId: m.id, SessionId: g.sessionID(m), Reason: pb.EndReason_END_REASON_IDLE_TIMEOUT})
	case 5:
		c = g.command(&pb.Consult{MerchantId: m.id, BuyerId: "b1", UserLevel: MaxUserLevel + 1})
	case 6:
		c = g.command(nil) // no body
	case 7:
		c = g.command(&pb.Consult{MerchantId: m.id, BuyerId: long})
	default:
		c = g.command(&pb.UpsertMerchant{MerchantId: m.id, Settings: &pb.MerchantSettings{MaxWaitMs: -1}})
	}
	return c
}

// genStats counts what a run exercised.
type genStats struct {
	entries, commands, errors, retries, outcomes, errChecked int
	byOutcome                                                map[pb.Outcome]int
	byKind                                                   map[pb.EventKind]int
}

func (s *genStats) add(o genStats) {
	s.entries += o.entries
	s.commands += o.commands
	s.errors += o.errors
	s.retries += o.retries
	s.errChecked += o.errChecked
	if s.byOutcome == nil {
		s.byOutcome, s.byKind = map[pb.Outcome]int{}, map[pb.EventKind]int{}
	}
	for k, v := range o.byOutcome {
		s.byOutcome[k] += v
	}
	for k, v := range o.byKind {
		s.byKind[k] += v
	}
}

func (s genStats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d entries, %d commands, %d errors (%d checked for no change), %d retries; outcomes:",
		s.entries, s.commands, s.errors, s.errChecked, s.retries)
	var os []int
	for k := range s.byOutcome {
		os = append(os, int(k))
	}
	sort.Ints(os)
	for _, k := range os {
		fmt.Fprintf(&b, " %s=%d", strings.TrimPrefix(pb.Outcome(k).String(), "OUTCOME_"), s.byOutcome[pb.Outcome(k)])
	}
	b.WriteString("; events:")
	var ks []int
	for k := range s.byKind {
		ks = append(ks, int(k))
	}
	sort.Ints(ks)
	for _, k := range ks {
		fmt.Fprintf(&b, " %s=%d", strings.TrimPrefix(pb.EventKind(k).String(), "EVENT_KIND_"), s.byKind[pb.EventKind(k)])
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// The property run.

// propRun applies one random sequence to an FSM and checks it step by step.
type propRun struct {
	t     testing.TB
	seed  uint64
	g     *gen
	f     *FSM
	lt    limitTracker
	n     int         // steps taken
	last  []*genEntry // recent entries, for failure messages
	stats genStats
}

func newPropRun(t testing.TB, seed uint64) *propRun {
	return &propRun{t: t, seed: seed, g: newGen(seed), f: New(propConfig(seed)),
		stats: genStats{byOutcome: map[pb.Outcome]int{}, byKind: map[pb.EventKind]int{}}}
}

func (p *propRun) fatalf(format string, args ...any) {
	p.t.Helper()
	var b strings.Builder
	for _, ge := range p.last {
		fmt.Fprintf(&b, "  entry %d (%s): %s\n", ge.index, ge.kind, prototext.MarshalOptions{}.Format(ge.e))
	}
	p.t.Fatalf("seed %d, step %d: %s\nlast entries:\n%sreproduce: go test ./fsm/ -run 'TestProperty$' -fsm.seed=%d -fsm.steps=%d",
		p.seed, p.n, fmt.Sprintf(format, args...), b.String(), p.seed, p.n+1)
}

// step generates and applies one entry, then checks:
//   - checkInvariants and the limit tracker;
//   - one result per command; invalid commands fail validation;
//   - a failed single command changed nothing (snapshot bytes, on a sample;
//     log time, event seq and queue seq, always);
//   - a retried command returns the first result (proto.Equal) and, alone
//     in its entry, changes nothing;
//   - queue order: a buyer assigned from a queue (other than by overflow)
//     was the head of that queue among the buyers queued before the entry
//     and still waiting, and went to a member agent of that group;
//   - a QUEUED result's position is the buyer's place in the queue.
func (p *propRun) step() {
	p.t.Helper()
	f := p.f
	ge := p.g.next(f)
	p.last = append(p.last, ge)
	if len(p.last) > 4 {
		p.last = p.last[1:]
	}
	single := len(ge.e.Commands) == 1
	var before []byte
	if single && (len(ge.replays) > 0 || ge.invalid || p.n%3 == 0) {
		before = stateBytes(p.t, f)
	}
	now0, seq0, qseq0 := f.now, f.eventSeq, f.queueSeq
	queued := queuedBefore(f)
	if j, ok := ge.replays[0]; ok {
		d := p.g.done[j]
		key := dedupKey{merchant: commandMerchant(d.cmd), request: d.cmd.RequestId}
		if _, ok := f.dedup.get(f.dedup.hash(key), key); !ok {
			p.fatalf("request %s (applied at %d, %d requests ago) is forgotten at log time %d", d.cmd.RequestId, d.timeMs, p.g.puts-d.put-1, f.now)
		}
	}

	results := f.ApplyEntry(ge.index, ge.e)
	p.n++
	p.stats.entries++
	p.stats.commands += len(ge.e.Commands)

	if len(results) != len(ge.e.Commands) {
		p.fatalf("%d results for %d commands", len(results), len(ge.e.Commands))
	}
	if err := checkInvariants(f); err != nil {
		p.fatalf("invariant: %v", err)
	}
	if err := p.lt.check(f); err != nil {
		p.fatalf("limit: %v", err)
	}
	failed := 0
	for i, r := range results {
		p.stats.byOutcome[r.Outcome]++
		if r.Error != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
			failed++
			p.stats.errors++
			if r.Outcome != pb.Outcome_OUTCOME_UNSPECIFIED || r.SessionId != "" {
				p.fatalf("command %d failed (%v) but has outcome %s / a session", i, ResultError(r), r.Outcome)
			}
		}
		if ge.invalid && r.Error != pb.ErrorCode_ERROR_CODE_INVALID && r.Error != pb.ErrorCode_ERROR_CODE_UNKNOWN_COMMAND {
			p.fatalf("invalid command %d: got %v, want a validation error", i, r)
		}
		if j, ok := ge.replays[i]; ok {
			p.stats.retries++
			if want := p.g.done[j].res; !proto.Equal(r, want) {
				p.fatalf("retry of %s returned\n  %v\nfirst result\n  %v", p.g.done[j].cmd.RequestId, r, want)
			}
		}
	}
	if single && failed == 1 {
		if f.now != now0 || f.eventSeq != seq0 || f.queueSeq != qseq0 {
			p.fatalf("failed command (%v) moved log time %d->%d, event seq %d->%d, queue seq %d->%d",
				ResultError(results[0]), now0, f.now, seq0, f.eventSeq, qseq0, f.queueSeq)
		}
	}
	if before != nil && (failed == 1 || len(ge.replays) > 0) {
		p.stats.errChecked += failed
		if after := stateBytes(p.t, f); !bytes.Equal(before, after) {
			p.fatalf("%s (result %v) changed the state: %s", ge.kind, results[0], diffSnapshots(before, after))
		}
	}
	events, _, _, err := f.Events("", seq0, 1<<30)
	if err != nil {
		p.fatalf("events after %d: %v", seq0, err)
	}
	for _, ev := range events {
		p.stats.byKind[ev.Kind]++
	}
	p.checkQueueOrder(ge, queued, events)
	p.checkPullGroups(ge, events)
	if single && len(ge.replays) == 0 {
		p.checkPosition(ge.e.Commands[0], results[0])
	}
	p.g.observe(ge, results, now0)
}

// checkPullGroups: a pull group never assigns a buyer by itself. A buyer
// in a pull group is assigned only by pull-next, to the preferred agent of
// a consult or escalation, or by a transfer to that agent.
func (p *propRun) checkPullGroups(ge *genEntry, events []*pb.Event) {
	p.t.Helper()
	for _, ev := range events {
		if ev.Kind != pb.EventKind_EVENT_KIND_SESSION_ASSIGNED {
			continue
		}
		m := p.f.merchants[ev.MerchantId]
		if m == nil || m.groups[ev.GroupId] == nil || !m.groups[ev.GroupId].pull() {
			continue
		}
		justified := false
		for _, c := range ge.e.Commands {
			switch b := c.Body.(type) {
			case *pb.Command_PullNext:
				justified = justified || (b.PullNext.MerchantId == ev.MerchantId && b.PullNext.AgentId == ev.AgentId)
			case *pb.Command_Consult:
				justified = justified || (b.Consult.MerchantId == ev.MerchantId && b.Consult.PreferredAgentId == ev.AgentId && b.Consult.BuyerId == ev.BuyerId)
			case *pb.Command_Escalate:
				if s, err := p.f.Session(ev.MerchantId, ev.SessionId); err == nil && b.Escalate.SessionId == ev.SessionId {
					justified = justified || s.PreferredAgentId == ev.AgentId
				}
			case *pb.Command_Transfer:
				justified = justified || (b.Transfer.MerchantId == ev.MerchantId && b.Transfer.ToAgentId == ev.AgentId)
			}
		}
		if !justified {
			p.fatalf("session %s/%s was assigned to %q in pull group %q without pull-next, a preferred agent or a transfer to that agent",
				ev.MerchantId, ev.SessionId, ev.AgentId, ev.GroupId)
		}
	}
}

// queuedAt is where a session waited before an entry.
type queuedAt struct {
	merchant, group string
	key             int64
	seq             uint64
	excluded        string // an agent who may not take this buyer
}

func queuedBefore(f *FSM) map[string]queuedAt {
	out := map[string]queuedAt{}
	for _, m := range f.merchants {
		for _, g := range m.groups {
			g.queue.Ascend(func(s *session) bool {
				out[m.id+"/"+s.SessionId] = queuedAt{merchant: m.id, group: g.id, key: s.QueueKey, seq: s.QueueSeq, excluded: s.ExcludedAgentId}
				return true
			})
		}
	}
	return out
}

// checkQueueOrder replays the entry's events over the queues as they were
// before it. Whenever a buyer who was waiting is assigned (other than after
// overflowing into another group), no buyer who was waiting in the same
// queue before the entry and still is may be ahead of them; and the agent
// must be a member of that group (drains and pull-next only take from the
// agent's own groups' queues). In entries where only agents drain their own
// queues (no group drain: no agent deletes, group upserts or agents going
// offline), the buyer must also be ahead of every still-waiting buyer in
// the agent's other push groups: an agent takes the best head of its push
// groups, and pull-next the best head of all its groups.
func (p *propRun) checkQueueOrder(ge *genEntry, queued map[string]queuedAt, events []*pb.Event) {
	p.t.Helper()
	agentDrainsOnly := true
	var puller *pb.PullNext
	for _, c := range ge.e.Commands {
		switch b := c.Body.(type) {
		case *pb.Command_DeleteAgent, *pb.Command_UpsertGroup:
			agentDrainsOnly = false
		case *pb.Command_SetAgentStatus:
			agentDrainsOnly = agentDrainsOnly && b.SetAgentStatus.Status != pb.AgentStatus_AGENT_STATUS_OFFLINE
		case *pb.Command_PullNext:
			puller = b.PullNext
		}
	}
	if len(ge.e.Commands) != 1 {
		puller = nil
	}
	waiting := map[string]queuedAt{}
	for k, q := range queued {
		waiting[k] = q
	}
	for _, ev := range events {
		k := ev.MerchantId + "/" + ev.SessionId
		switch ev.Kind {
		case pb.EventKind_EVENT_KIND_SESSION_ASSIGNED:
			q, ok := waiting[k]
			if !ok {
				continue
			}
			delete(waiting, k)
			for ok2, o := range waiting {
				if o.merchant == q.merchant && o.group == q.group && o.excluded != ev.AgentId && (o.key < q.key || (o.key == q.key && o.seq < q.seq)) {
					p.fatalf("session %s was assigned from queue %s/%s (key %d seq %d) ahead of %s (key %d seq %d)",
						k, q.merchant, q.group, q.key, q.seq, ok2, o.key, o.seq)
				}
			}
			m := p.f.merchants[q.merchant]
			a := m.agents[ev.AgentId]
			if a == nil || a.groups[q.group] == nil {
				p.fatalf("session %s was assigned from queue %s/%s to agent %q, not a member of that group", k, q.merchant, q.group, ev.AgentId)
			}
			if !agentDrainsOnly {
				continue
			}
			pulled := puller != nil && puller.MerchantId == q.merchant && puller.AgentId == a.id
			for ok2, o := range waiting {
				og := m.groups[o.group]
				if o.merchant != q.merchant || o.group == q.group || a.groups[o.group] == nil || og == nil || (og.pull() && !pulled) || o.excluded == a.id {
					continue
				}
				if o.key < q.key || (o.key == q.key && o.seq < q.seq) {
					p.fatalf("agent %s took %s from group %s (key %d seq %d) while %s waited ahead in its group %s (key %d seq %d)",
						a.id, k, q.group, q.key, q.seq, ok2, o.group, o.key, o.seq)
				}
			}
		case pb.EventKind_EVENT_KIND_SESSION_ENDED, pb.EventKind_EVENT_KIND_SESSION_OVERFLOWED:
			delete(waiting, k)
		}
	}
}

// checkPosition checks that a QUEUED result of a single command reports the
// buyer's place in the queue.
func (p *propRun) checkPosition(c *pb.Command, r *pb.Result) {
	p.t.Helper()
	if r.Outcome != pb.Outcome_OUTCOME_QUEUED {
		return
	}
	mid := commandMerchant(c)
	q, n, err := p.f.Queue(mid, r.GroupId, 1<<30)
	if err != nil {
		p.fatalf("queue of %s/%s: %v", mid, r.GroupId, err)
	}
	pos := 0
	for i, qs := range q {
		if qs.SessionId == r.SessionId {
			pos = i + 1
		}
	}
	if pos == 0 || uint32(pos) != r.Position || n != len(q) {
		p.fatalf("QUEUED result says position %d; the session is at %d of %d", r.Position, pos, n)
	}
}

// stateBytes is the snapshot with the header's last index zeroed: the
// state as commands see it. (Every entry moves the last index, even one
// whose commands all fail or are retries.)
func stateBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	b := buf.Bytes()
	size, n := protowire.ConsumeVarint(b)
	if n < 0 || uint64(len(b)-n) < size {
		t.Fatalf("snapshot does not start with a record")
	}
	rec := &pb.SnapshotRecord{}
	if err := proto.Unmarshal(b[n:n+int(size)], rec); err != nil || rec.GetHeader() == nil {
		t.Fatalf("snapshot does not start with a header: %v", err)
	}
	rec.GetHeader().LastIndex = 0
	var out bytes.Buffer
	if _, err := (protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}).MarshalTo(&out, rec); err != nil {
		t.Fatalf("marshal header: %v", err)
	}
	out.Write(b[n+int(size):])
	return out.Bytes()
}

// diffSnapshots names the first snapshot record that differs.
func diffSnapshots(a, b []byte) string {
	d := DiffSnapshots(a, b, 1)
	if len(d) == 0 {
		return "snapshots equal"
	}
	return d[0]
}
