package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/frontdeskhq/frontdesk/client"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// merchantDoc is one YAML document of `fdctl apply`: a merchant with its
// settings, groups and agents. settings, each group and each agent use the
// API's JSON field names (camelCase, or the proto's snake_case) and enum
// names; merchantId may be left out of groups and agents. An agent may
// also say its status (AGENT_STATUS_ONLINE, ...), which apply then sets.
//
//	merchant: shop1
//	settings: {queueEnabled: true, defaultGroupId: presales}
//	groups:
//	  - groupId: presales
//	  - {groupId: aftersales, mode: GROUP_MODE_PULL, overflowGroupId: presales}
//	agents:
//	  - {agentId: alice, limit: 5, groups: [{groupId: presales, skill: 80}], status: AGENT_STATUS_ONLINE}
type merchantDoc struct {
	Merchant string            `json:"merchant"`
	Settings json.RawMessage   `json:"settings"`
	Groups   []json.RawMessage `json:"groups"`
	Agents   []json.RawMessage `json:"agents"`
}

// merchantConfig is a parsed merchantDoc.
type merchantConfig struct {
	id       string
	settings *pb.MerchantSettings
	groups   []*pb.UpsertGroup
	agents   []*pb.UpsertAgent
	status   map[string]pb.AgentStatus // agent → status to set
}

// applied is one line of apply's report.
type applied struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Action string `json:"action"`
}

// apply creates or updates the merchants of a YAML file (several documents
// separated by ---): the merchant, then its groups, its settings, its
// agents and their statuses. What the file leaves out is left alone: apply
// deletes nothing. Every change is an upsert, so applying a file twice is
// harmless.
func (c *cmd) apply(args []string) error {
	var file string
	if _, err := c.flags("apply", args, 0, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "f", "", "the YAML file (- for standard input)")
	}); err != nil {
		return err
	}
	if file == "" {
		return fmt.Errorf("%w: apply needs -f file.yaml", errUsage)
	}
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return err
	}
	configs, err := parseMerchants(data)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var report []applied
	for _, mc := range configs {
		r, err := c.applyMerchant(cl, mc)
		report = append(report, r...)
		if err != nil {
			c.printApplied(report)
			return err
		}
	}
	return c.printApplied(report)
}

func (c *cmd) printApplied(report []applied) error {
	if c.json {
		return writeJSON(c.stdout, report)
	}
	for _, r := range report {
		fmt.Fprintf(c.stdout, "%s %s %s\n", r.Kind, r.ID, r.Action)
	}
	return nil
}

// applyMerchant applies one merchant in an order the state machine
// accepts: the merchant must exist before its groups, a group before the
// settings or groups that name it, and groups before agents.
func (c *cmd) applyMerchant(cl *client.Client, mc merchantConfig) ([]applied, error) {
	var report []applied
	existing := map[string]bool{}
	cur, err := cl.GetMerchant(c.ctx, mc.id)
	switch {
	case err == nil:
		for _, g := range cur.Groups {
			existing[g.GroupId] = true
		}
	case errors.Is(err, client.ErrNotFound):
		if _, err := cl.UpsertMerchant(c.ctx, &pb.UpsertMerchant{MerchantId: mc.id}); err != nil {
			return report, fmt.Errorf("merchant %s: %w", mc.id, err)
		}
		report = append(report, applied{"merchant", mc.id, "created"})
	default:
		return report, fmt.Errorf("merchant %s: %w", mc.id, err)
	}
	// Groups that name an overflow group come after the others, and new
	// ones are first made without it: the group they overflow into may be
	// new too (or overflow back into them).
	var plain, overflowing []*pb.UpsertGroup
	for _, g := range mc.groups {
		if g.OverflowGroupId == "" {
			plain = append(plain, g)
			continue
		}
		overflowing = append(overflowing, g)
		if !existing[g.GroupId] {
			bare := &pb.UpsertGroup{MerchantId: g.MerchantId, GroupId: g.GroupId, Mode: g.Mode}
			if _, err := cl.UpsertGroup(c.ctx, bare); err != nil {
				return report, fmt.Errorf("group %s/%s: %w", mc.id, g.GroupId, err)
			}
		}
	}
	for _, g := range append(plain, overflowing...) {
		if _, err := cl.UpsertGroup(c.ctx, g); err != nil {
			return report, fmt.Errorf("group %s/%s: %w", mc.id, g.GroupId, err)
		}
		report = append(report, applied{"group", mc.id + "/" + g.GroupId, "configured"})
	}
	if mc.settings != nil {
		if _, err := cl.UpsertMerchant(c.ctx, &pb.UpsertMerchant{MerchantId: mc.id, Settings: mc.settings}); err != nil {
			return report, fmt.Errorf("merchant %s settings: %w", mc.id, err)
		}
		report = append(report, applied{"merchant", mc.id, "configured"})
	}
	for _, a := range mc.agents {
		if _, err := cl.UpsertAgent(c.ctx, a); err != nil {
			return report, fmt.Errorf("agent %s/%s: %w", mc.id, a.AgentId, err)
		}
		action := "configured"
		if st, ok := mc.status[a.AgentId]; ok {
			if _, err := cl.SetStatus(c.ctx, mc.id, a.AgentId, st); err != nil {
				return report, fmt.Errorf("agent %s/%s status: %w", mc.id, a.AgentId, err)
			}
			action += ", " + enumName(st.String(), "AGENT_STATUS_")
		}
		report = append(report, applied{"agent", mc.id + "/" + a.AgentId, action})
	}
	return report, nil
}

// docSeparator splits a YAML stream into documents.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// parseMerchants reads the YAML documents of an apply file. Errors name the
// document (1-based) and the field.
func parseMerchants(data []byte) ([]merchantConfig, error) {
	var out []merchantConfig
	strict := protojson.UnmarshalOptions{} // unknown fields are errors: typos must not pass
	for i, doc := range docSeparator.Split(string(data), -1) {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue // an empty document
		}
		var d merchantDoc
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			return nil, fmt.Errorf("document %d: %w (a document has merchant, settings, groups, agents)", i+1, err)
		}
		if d.Merchant == "" {
			return nil, fmt.Errorf("document %d: merchant: must name the merchant", i+1)
		}
		mc := merchantConfig{id: d.Merchant, status: map[string]pb.AgentStatus{}}
		if len(d.Settings) > 0 && string(d.Settings) != "null" {
			mc.settings = &pb.MerchantSettings{}
			if err := strict.Unmarshal(d.Settings, mc.settings); err != nil {
				return nil, fmt.Errorf("document %d: settings: %w", i+1, err)
			}
		}
		for j, raw := range d.Groups {
			g := &pb.UpsertGroup{}
			if err := strict.Unmarshal(raw, g); err != nil {
				return nil, fmt.Errorf("document %d: groups[%d]: %w", i+1, j, err)
			}
			if err := ownMerchant(&g.MerchantId, d.Merchant); err != nil {
				return nil, fmt.Errorf("document %d: groups[%d]: %w", i+1, j, err)
			}
			mc.groups = append(mc.groups, g)
		}
		for j, raw := range d.Agents {
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(raw, &fields); err != nil {
				return nil, fmt.Errorf("document %d: agents[%d]: %w", i+1, j, err)
			}
			status, hasStatus := fields["status"]
			delete(fields, "status")
			rest, _ := json.Marshal(fields)
			a := &pb.UpsertAgent{}
			if err := strict.Unmarshal(rest, a); err != nil {
				return nil, fmt.Errorf("document %d: agents[%d]: %w", i+1, j, err)
			}
			if err := ownMerchant(&a.MerchantId, d.Merchant); err != nil {
				return nil, fmt.Errorf("document %d: agents[%d]: %w", i+1, j, err)
			}
			if hasStatus {
				var name string
				if err := json.Unmarshal(status, &name); err != nil {
					return nil, fmt.Errorf("document %d: agents[%d].status: %w", i+1, j, err)
				}
				v, ok := pb.AgentStatus_value[name]
				if !ok || v == 0 {
					return nil, fmt.Errorf("document %d: agents[%d].status: %q is not AGENT_STATUS_ONLINE, _AWAY or _OFFLINE", i+1, j, name)
				}
				mc.status[a.AgentId] = pb.AgentStatus(v)
			}
			mc.agents = append(mc.agents, a)
		}
		out = append(out, mc)
	}
	if len(out) == 0 {
		return nil, errors.New("no merchant in the file")
	}
	return out, nil
}

// ownMerchant fills a group's or agent's merchant id, or checks it.
func ownMerchant(field *string, merchant string) error {
	switch *field {
	case "":
		*field = merchant
	case merchant:
	default:
		return fmt.Errorf("merchantId %q is not the document's merchant %q", *field, merchant)
	}
	return nil
}
