package traffic

import (
	"context"
	"fmt"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/e2e/model"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Hot is the id of the hot merchant.
const Hot = "hot"

// Merchants returns the merchants the traffic uses: cfg.Merchants ordinary
// ones ("shop-00", ...) and the hot one. Each has a push group "pre" (the
// default) and a pull group "after" (after-sales pages), agents in "pre",
// in "after", or in both, with small limits so that queues, BUSY answers
// and limits are exercised all the time. Odd shops are bot-first; every
// third has its queue switched off (its pull group still queues).
func Merchants(cfg Config) []*model.Merchant {
	cfg = cfg.withDefaults()
	var out []*model.Merchant
	for k := 0; k < cfg.Merchants; k++ {
		out = append(out, merchant(fmt.Sprintf("shop-%02d", k), k%2 == 1, k%3 != 2, 6, 4))
	}
	return append(out, merchant(Hot, false, true, 20, 8))
}

func merchant(id string, botFirst, queue bool, maxQueue, agents int) *model.Merchant {
	m := &model.Merchant{
		ID: id, BotFirst: botFirst, QueueEnabled: queue, MaxQueue: maxQueue,
		Groups:       []model.Group{{ID: "after", Pull: true}, {ID: "pre"}},
		DefaultGroup: "pre", AfterGroup: "after",
	}
	for i := 0; i < agents; i++ {
		a := model.Agent{ID: fmt.Sprintf("a%d", i), Limit: uint32(1 + i%2), Status: "ONLINE"}
		switch i % 4 {
		case 0, 2:
			a.Groups = []string{"pre"}
		case 1:
			a.Groups = []string{"pre", "after"}
		case 3:
			a.Groups = []string{"after"}
		}
		m.Agents = append(m.Agents, a)
	}
	return m
}

// Setup creates the merchants as Merchants describes them: settings,
// groups, agents, and agents' statuses.
func Setup(ctx context.Context, cl *client.Client, ms []*model.Merchant) error {
	for _, m := range ms {
		if err := setup(ctx, cl, m); err != nil {
			return fmt.Errorf("traffic: set up %s: %w", m.ID, err)
		}
	}
	return nil
}

func setup(ctx context.Context, cl *client.Client, m *model.Merchant) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if _, err := cl.UpsertMerchant(ctx, &pb.UpsertMerchant{MerchantId: m.ID}); err != nil {
		return err
	}
	for _, g := range m.Groups {
		mode := pb.GroupMode_GROUP_MODE_PUSH
		if g.Pull {
			mode = pb.GroupMode_GROUP_MODE_PULL
		}
		if _, err := cl.UpsertGroup(ctx, &pb.UpsertGroup{MerchantId: m.ID, GroupId: g.ID, Mode: mode}); err != nil {
			return err
		}
	}
	s := &pb.MerchantSettings{
		QueueEnabled: m.QueueEnabled, MaxQueueLength: uint32(m.MaxQueue), BotFirst: m.BotFirst,
		DefaultGroupId: m.DefaultGroup,
	}
	if m.AfterGroup != "" {
		s.Rules = []*pb.RoutingRule{{GroupId: m.AfterGroup, PageSource: pb.PageSource_PAGE_SOURCE_AFTER_SALES}}
	}
	if _, err := cl.UpsertMerchant(ctx, &pb.UpsertMerchant{MerchantId: m.ID, Settings: s}); err != nil {
		return err
	}
	for _, a := range m.Agents {
		if _, err := cl.UpsertAgent(ctx, agentConfig(m.ID, a.ID, a.Groups, a.Limit)); err != nil {
			return err
		}
		st := pb.AgentStatus(pb.AgentStatus_value["AGENT_STATUS_"+a.Status])
		if _, err := cl.SetStatus(ctx, m.ID, a.ID, st); err != nil {
			return err
		}
	}
	return nil
}

// agentConfig is an agent's configuration: one skill level everywhere, so
// that nothing but load, limit and status tells agents apart.
func agentConfig(merchant, agent string, groups []string, limit uint32) *pb.UpsertAgent {
	a := &pb.UpsertAgent{MerchantId: merchant, AgentId: agent, Limit: limit}
	for _, g := range groups {
		a.Groups = append(a.Groups, &pb.AgentGroup{GroupId: g, Skill: 50})
	}
	return a
}
