package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// getMerchant prints a merchant's settings, groups and agents; with
// --yaml, as an apply document (so `get merchant x --yaml > x.yaml`, edit,
// `apply -f x.yaml` round-trips).
func (c *cmd) getMerchant(args []string) error {
	var asYAML bool
	pos, err := c.flags("get merchant", args, 1, 1, func(fs *flag.FlagSet) {
		fs.BoolVar(&asYAML, "yaml", false, "print the merchant as an apply document")
	})
	if err != nil {
		return err
	}
	id := pos[0]
	cl, err := c.client()
	if err != nil {
		return err
	}
	m, err := cl.GetMerchant(c.ctx, id)
	if err != nil {
		return err
	}
	switch {
	case c.json:
		return writeJSON(c.stdout, protoJSON(m))
	case asYAML:
		return c.writeMerchantYAML(id, m)
	}
	s := m.GetSettings()
	if s == nil {
		s = &pb.MerchantSettings{}
	}
	t := newTable(c.stdout, "MERCHANT", "SHARD", "QUEUE", "MAX QUEUE", "MAX WAIT", "BOT FIRST", "DEFAULT GROUP", "DEFAULT LIMIT", "RULES")
	t.row(id, fmt.Sprint(m.Shard), onOff(s.QueueEnabled), fmt.Sprint(s.MaxQueueLength), msText(s.MaxWaitMs),
		onOff(s.BotFirst), s.DefaultGroupId, fmt.Sprint(s.DefaultLimit), fmt.Sprint(len(s.Rules)))
	t.flush()
	fmt.Fprintln(c.stdout)
	t = newTable(c.stdout, "GROUP", "MODE", "OVERFLOW")
	for _, g := range m.Groups {
		mode := enumName(g.Mode.String(), "GROUP_MODE_")
		if mode == "" {
			mode = "push"
		}
		t.row(g.GroupId, mode, g.OverflowGroupId)
	}
	t.flush()
	fmt.Fprintln(c.stdout)
	c.agentTable(m.Agents)
	return nil
}

// writeMerchantYAML prints m in the format apply reads.
func (c *cmd) writeMerchantYAML(id string, m *pb.GetMerchantResponse) error {
	doc := map[string]any{"merchant": id}
	if m.Settings != nil {
		doc["settings"] = protoJSON(m.Settings)
	}
	groups, agents := []json.RawMessage{}, []json.RawMessage{}
	for _, g := range m.Groups {
		g = proto.Clone(g).(*pb.UpsertGroup)
		g.MerchantId = ""
		groups = append(groups, protoJSON(g))
	}
	for _, a := range m.Agents {
		cfg := proto.Clone(a.Config).(*pb.UpsertAgent)
		cfg.MerchantId = ""
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(protoJSON(cfg), &fields); err != nil {
			return err
		}
		if a.Status != pb.AgentStatus_AGENT_STATUS_UNSPECIFIED {
			fields["status"], _ = json.Marshal(a.Status.String())
		}
		b, _ := json.Marshal(fields)
		agents = append(agents, b)
	}
	doc["groups"], doc["agents"] = groups, agents
	js, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	out, err := yaml.JSONToYAML(js)
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(out)
	return err
}

// agents prints a merchant's agents with status, load and limit.
func (c *cmd) agents(args []string) error {
	pos, err := c.flags("agents", args, 1, 1, nil)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	as, err := cl.ListAgents(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json {
		out := make([]json.RawMessage, len(as))
		for i, a := range as {
			out[i] = protoJSON(a)
		}
		return writeJSON(c.stdout, out)
	}
	c.agentTable(as)
	return nil
}

func (c *cmd) agentTable(as []*pb.AgentView) {
	t := newTable(c.stdout, "AGENT", "STATUS", "LOAD", "LIMIT", "GROUPS (SKILL)", "WEIGHT", "RATING")
	for _, a := range as {
		var groups []string
		for _, g := range a.Config.GetGroups() {
			groups = append(groups, fmt.Sprintf("%s(%d)", g.GroupId, g.Skill))
		}
		status := enumName(a.Status.String(), "AGENT_STATUS_")
		if status == "" {
			status = "offline"
		}
		t.row(a.Config.GetAgentId(), status, fmt.Sprint(a.Load), fmt.Sprint(a.Limit), strings.Join(groups, " "),
			fmt.Sprint(a.Config.GetWeight()), fmt.Sprintf("%.2f", float64(a.Config.GetRating())/100))
	}
	t.flush()
}

// queueView is `fdctl queue --json`.
type queueView struct {
	Merchant string          `json:"merchant"`
	Stats    json.RawMessage `json:"stats"`
	Groups   []groupQueue    `json:"groups"`
}

type groupQueue struct {
	Group    string            `json:"group"`
	Length   uint32            `json:"length"`
	Sessions []json.RawMessage `json:"sessions"`
}

// queueHead is how many waiting buyers per group queue prints.
const queueHead = 20

// queue prints, for each group of a merchant, how many buyers wait and
// the first of them, with the merchant's load and surge level.
func (c *cmd) queue(args []string) error {
	pos, err := c.flags("queue", args, 1, 1, nil)
	if err != nil {
		return err
	}
	id := pos[0]
	cl, err := c.client()
	if err != nil {
		return err
	}
	m, err := cl.GetMerchant(c.ctx, id)
	if err != nil {
		return err
	}
	st, err := cl.GetStats(c.ctx, id)
	if err != nil {
		return err
	}
	v := queueView{Merchant: id, Stats: protoJSON(st)}
	queues := map[string]*pb.GetQueueResponse{}
	for _, g := range m.Groups {
		q, err := cl.GetQueue(c.ctx, id, g.GroupId, queueHead)
		if err != nil {
			return err
		}
		queues[g.GroupId] = q
		gq := groupQueue{Group: g.GroupId, Length: q.Length}
		for _, s := range q.Sessions {
			gq.Sessions = append(gq.Sessions, protoJSON(s))
		}
		v.Groups = append(v.Groups, gq)
	}
	if c.json {
		return writeJSON(c.stdout, v)
	}
	surge := enumName(st.GetStats().GetSurge().String(), "SURGE_LEVEL_")
	if surge == "" {
		surge = "normal"
	}
	fmt.Fprintf(c.stdout, "%s: %d waiting, %d assigned, load %d of %d, %d consults/min, surge %s\n\n",
		id, st.GetStats().GetQueued(), st.GetStats().GetAssigned(), st.GetLoad(), st.GetCapacity(), st.GetInflowPerMinute(), surge)
	t := newTable(c.stdout, "GROUP", "WAITING", "POS", "SESSION", "BUYER", "LEVEL", "COUPON")
	for _, g := range m.Groups {
		q := queues[g.GroupId]
		if len(q.Sessions) == 0 {
			t.row(g.GroupId, fmt.Sprint(q.Length), "", "", "", "", "")
			continue
		}
		for i, s := range q.Sessions {
			name, length := "", ""
			if i == 0 {
				name, length = g.GroupId, fmt.Sprint(q.Length)
			}
			coupon := ""
			if s.Compensation {
				coupon = "yes"
			}
			t.row(name, length, fmt.Sprint(i+1), s.SessionId, s.BuyerId, fmt.Sprint(s.UserLevel), coupon)
		}
	}
	t.flush()
	return nil
}

func msText(ms int64) string {
	if ms == 0 {
		return "none"
	}
	return fmt.Sprintf("%gs", float64(ms)/1000)
}
