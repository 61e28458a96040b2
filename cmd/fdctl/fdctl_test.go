package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/node/nodetest"
)

// fdctl runs the command line against addrs and returns stdout, stderr
// and the exit code.
func fdctl(t *testing.T, addrs []string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	env := func(k string) string {
		if k == "FDCTL_ADDR" {
			return strings.Join(addrs, ",")
		}
		return ""
	}
	code := run(append([]string{"--timeout", "60s"}, args...), &out, &errb, env)
	return out.String(), errb.String(), code
}

// mustFdctl runs fdctl and fails the test unless it exits 0.
func mustFdctl(t *testing.T, addrs []string, args ...string) string {
	t.Helper()
	out, errs, code := fdctl(t, addrs, args...)
	if code != 0 {
		t.Fatalf("fdctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func contains(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("%s does not show %q:\n%s", what, w, out)
		}
	}
}

const shopYAML = `# two merchants
merchant: shop1
settings:
  queueEnabled: true
  maxQueueLength: 200
  defaultGroupId: presales
groups:
  - groupId: presales
    overflowGroupId: aftersales
  - {groupId: aftersales, mode: GROUP_MODE_PULL}
agents:
  - agentId: alice
    limit: 1
    groups: [{groupId: presales, skill: 80}]
    status: AGENT_STATUS_ONLINE
  - {agentId: bob, limit: 3, groups: [{groupId: aftersales, skill: 60}], rating: 480}
---
merchant: shop2
groups: [{groupId: g}]
`

// TestFdctl runs every subcommand against a three-node in-process cluster.
func TestFdctl(t *testing.T) {
	c := nodetest.Start(t, 3, nodetest.Options{Shards: 4})
	c.WaitPlaced(c.Running(), 30*time.Second)
	addrs := c.APIAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("status", func(t *testing.T) {
		out := mustFdctl(t, addrs, "status")
		contains(t, "status", out, "node1", "node2", "node3", "alive", "settled", "VOTERS (LAG)")
		// Placement may still be handing leaderships over (it spreads them
		// once the cluster has formed), and during a hand-over a shard has
		// no leader: ask again until status shows every shard led.
		nodetest.Eventually(t, 20*time.Second, func() error {
			var v statusView
			if err := json.Unmarshal([]byte(mustFdctl(t, addrs, "status", "--json")), &v); err != nil {
				t.Fatal(err)
			}
			if len(v.Nodes) != 3 || len(v.Shards) != 4 {
				t.Fatalf("status --json: %d nodes, %d shards; want 3 and 4", len(v.Nodes), len(v.Shards))
			}
			for _, n := range v.Nodes {
				if !n.Reachable || n.Replicas != 4 {
					t.Fatalf("node %+v: want reachable with 4 replicas", n)
				}
			}
			for _, s := range v.Shards {
				if len(s.Voters) != 3 || len(s.Lag) != 3 || !s.Settled || s.Leader == "" {
					return fmt.Errorf("shard %+v: want a leader, 3 voters with a lag each, settled", s)
				}
			}
			return nil
		})
	})

	file := filepath.Join(t.TempDir(), "shops.yaml")
	if err := os.WriteFile(file, []byte(shopYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("apply", func(t *testing.T) {
		out := mustFdctl(t, addrs, "apply", "-f", file)
		contains(t, "apply", out, "merchant shop1 created", "group shop1/presales configured", "agent shop1/alice configured, online", "merchant shop2 created")
		// Again: nothing is created, everything is configured the same.
		out = mustFdctl(t, addrs, "apply", "-f", file, "--json")
		var report []applied
		if err := json.Unmarshal([]byte(out), &report); err != nil || len(report) != 6 {
			t.Fatalf("apply --json: %v, %d lines:\n%s", err, len(report), out)
		}
	})

	t.Run("get merchant", func(t *testing.T) {
		out := mustFdctl(t, addrs, "get", "merchant", "shop1")
		contains(t, "get merchant", out, "presales", "aftersales", "pull", "alice", "online", "4.80")
		var m map[string]any
		if err := json.Unmarshal([]byte(mustFdctl(t, addrs, "--json", "get", "merchant", "shop1")), &m); err != nil || m["settings"] == nil {
			t.Fatalf("get merchant --json: %v %v", err, m)
		}
		// --yaml writes what apply reads.
		rt := filepath.Join(t.TempDir(), "shop1.yaml")
		if err := os.WriteFile(rt, []byte(mustFdctl(t, addrs, "get", "merchant", "shop1", "--yaml")), 0o644); err != nil {
			t.Fatal(err)
		}
		contains(t, "apply of get --yaml", mustFdctl(t, addrs, "apply", "-f", rt), "agent shop1/bob configured, offline")
		if _, errs, code := fdctl(t, addrs, "get", "merchant", "nope"); code != 1 || !strings.Contains(errs, "not_found") {
			t.Fatalf("get merchant nope: exit %d, %s", code, errs)
		}
	})

	t.Run("agents and queue", func(t *testing.T) {
		cl, err := client.New(ctx, addrs)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for _, b := range []string{"b1", "b2", "b3"} {
			if _, err := cl.Consult(ctx, &pb.Consult{MerchantId: "shop1", BuyerId: b, UserLevel: 2}); err != nil {
				t.Fatal(err)
			}
		}
		out := mustFdctl(t, addrs, "agents", "shop1")
		contains(t, "agents", out, "alice", "online")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[0] == "alice" && (f[2] != "1" || f[3] != "1") {
				t.Fatalf("alice should be at load 1 of limit 1: %q", line)
			}
		}
		out = mustFdctl(t, addrs, "queue", "shop1")
		contains(t, "queue", out, "2 waiting", "1 assigned", "presales", "b2", "b3")
		var q queueView
		if err := json.Unmarshal([]byte(mustFdctl(t, addrs, "queue", "shop1", "--json")), &q); err != nil {
			t.Fatal(err)
		}
		for _, g := range q.Groups {
			if g.Group == "presales" && (g.Length != 2 || len(g.Sessions) != 2) {
				t.Fatalf("queue --json presales: %+v", g)
			}
		}
	})

	t.Run("leader transfer", func(t *testing.T) {
		out := mustFdctl(t, addrs, "leader", "transfer", "1", "node2")
		contains(t, "leader transfer", out, "shard 1: leader is now node2")
		out = mustFdctl(t, addrs, "leader", "transfer", "2", "--json")
		var res map[string]any
		if err := json.Unmarshal([]byte(out), &res); err != nil || res["leader"] == "" {
			t.Fatalf("leader transfer --json: %v %s", err, out)
		}
		if _, _, code := fdctl(t, addrs, "leader", "transfer", "x"); code != 2 {
			t.Fatalf("leader transfer x: exit %d, want 2", code)
		}
	})

	t.Run("node drain", func(t *testing.T) {
		out := mustFdctl(t, addrs, "node", "drain", "node3", "--wait")
		contains(t, "node drain --wait", out, "node3: drained")
		c.WaitPlaced([]string{"node1", "node2"}, 30*time.Second)
		out = mustFdctl(t, addrs, "node", "drain", "node3", "--cancel")
		contains(t, "node drain --cancel", out, "not draining")
		c.WaitPlaced(c.Running(), 30*time.Second)
		if _, errs, code := fdctl(t, addrs, "node", "drain", "nobody"); code != 1 || !strings.Contains(errs, "not a member") {
			t.Fatalf("node drain nobody: exit %d, %s", code, errs)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{{}, {"bogus"}, {"get"}, {"queue"}, {"apply"}, {"status", "extra"}, {"node", "drain"}} {
			if _, _, code := fdctl(t, addrs, args...); code != 2 {
				t.Errorf("fdctl %v: exit %d, want 2", args, code)
			}
		}
	})
}

// TestParseMerchants: apply's file errors name the document and field.
func TestParseMerchants(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"no merchant", "groups: [{groupId: g}]", "document 1: merchant"},
		{"unknown key", "merchant: m\ngroupz: []", "document 1"},
		{"typo in settings", "merchant: m\nsettings: {queueEnabld: true}", "settings"},
		{"typo in a group", "merchant: m\ngroups: [{groupId: g, mod: 1}]", "groups[0]"},
		{"bad status", "merchant: m\nagents: [{agentId: a, status: BUSY}]", "agents[0].status"},
		{"other merchant", "merchant: m\nagents: [{agentId: a, merchantId: x}]", `"x" is not the document's merchant`},
		{"second document", "merchant: m\n---\nmerchant: n\nsettings: {nope: 1}", "document 2"},
		{"empty", "# nothing\n", "no merchant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseMerchants([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	ms, err := parseMerchants([]byte(shopYAML))
	if err != nil || len(ms) != 2 || len(ms[0].groups) != 2 || len(ms[0].agents) != 2 ||
		ms[0].groups[1].MerchantId != "shop1" || ms[0].status["alice"] != pb.AgentStatus_AGENT_STATUS_ONLINE {
		t.Fatalf("parseMerchants(shopYAML) = %+v, %v", ms, err)
	}
}
