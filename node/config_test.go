package node

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseFlags(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		c, err := ParseFlags("x", []string{"--id", "a", "--data-dir", "/d"}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if c.APIAddr != ":7420" || c.RaftAddr != ":7421" || c.GossipAddr != ":7422" || c.Shards != 16 || c.TickInterval != time.Second ||
			c.Replication != 3 || c.DeadAfter != 30*time.Second || c.LogStore != LogStoreAuto || c.RaftHeartbeatTimeout != 0 || c.RaftCommitTimeout != 0 || c.RaftNoQuiet ||
			c.GCHeadroom != DefaultGCHeadroom {
			t.Fatalf("unexpected defaults: %+v", c)
		}
	})
	t.Run("environment, flags win", func(t *testing.T) {
		c, err := ParseFlags("x", []string{"--shards", "8"}, env(map[string]string{
			"FRONTDESK_ID": "envid", "FRONTDESK_DATA_DIR": "/e", "FRONTDESK_SHARDS": "4",
			"FRONTDESK_JOIN": "h1:7422, h2:7422", "FRONTDESK_BOOTSTRAP_EXPECT": "3",
			"FRONTDESK_DEAD_AFTER": "3s", "FRONTDESK_REPLICATION": "5", "FRONTDESK_SHARED_LOG": "true",
			"FRONTDESK_RAFT_HEARTBEAT_TIMEOUT": "1s", "FRONTDESK_RAFT_COMMIT_TIMEOUT": "100ms", "FRONTDESK_RAFT_QUIET": "false",
			"FRONTDESK_GC_HEADROOM": "1GiB",
		}))
		if err != nil {
			t.Fatal(err)
		}
		if c.ID != "envid" || c.DataDir != "/e" || c.Shards != 8 || c.BootstrapExpect != 3 ||
			len(c.Join) != 2 || c.Join[1] != "h2:7422" || c.DeadAfter != 3*time.Second || c.Replication != 5 || c.LogStore != LogStoreShared ||
			c.RaftHeartbeatTimeout != time.Second || c.RaftCommitTimeout != 100*time.Millisecond || !c.RaftNoQuiet ||
			c.GCHeadroom != 1<<30 {
			t.Fatalf("got %+v", c)
		}
		c, err = ParseFlags("x", []string{"--id", "a", "--data-dir", "/d", "--gc-headroom", "0"}, env(map[string]string{"FRONTDESK_GC_HEADROOM": "1GiB"}))
		if err != nil || c.GCHeadroom != 0 {
			t.Fatalf("--gc-headroom 0 over the environment's 1GiB: %v, %v", c.GCHeadroom, err)
		}
	})
	t.Run("dev", func(t *testing.T) {
		c, err := ParseFlags("x", []string{"--dev"}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if c.APIAddr != "127.0.0.1:7420" || c.BootstrapExpect != 1 || c.ID != "dev" || c.DataDir != "" {
			t.Fatalf("got %+v", c)
		}
		c, err = ParseFlags("x", []string{"--dev", "--api-addr", "127.0.0.1:9000"}, env(nil))
		if err != nil || c.APIAddr != "127.0.0.1:9000" {
			t.Fatalf("explicit flag lost in dev mode: %+v %v", c, err)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no data dir", []string{"--id", "a"}, nil, "--data-dir is required"},
		{"bad log store", []string{"--id", "a", "--data-dir", "/d", "--log-store", "bolt"}, nil, "--log-store"},
		{"bad raft-quiet", []string{"--id", "a", "--data-dir", "/d", "--raft-quiet=sometimes"}, nil, "raft-quiet"},
		{"bad shared-log", []string{"--id", "a", "--data-dir", "/d", "--shared-log=maybe"}, nil, "shared-log"},
		{"zero shards", []string{"--id", "a", "--data-dir", "/d", "--shards", "0"}, nil, "--shards"},
		{"bad address", []string{"--id", "a", "--data-dir", "/d", "--api-addr", "nope"}, nil, "--api-addr"},
		{"bad env", []string{"--id", "a", "--data-dir", "/d"}, map[string]string{"FRONTDESK_SHARDS": "many"}, "FRONTDESK_SHARDS"},
		{"stray argument", []string{"--id", "a", "--data-dir", "/d", "extra"}, nil, "unexpected arguments"},
		{"negative replication", []string{"--id", "a", "--data-dir", "/d", "--replication", "-1"}, nil, "--replication"},
		{"negative dead-after", []string{"--id", "a", "--data-dir", "/d", "--dead-after", "-1s"}, nil, "--dead-after"},
		{"max append entries over raft's limit", []string{"--id", "a", "--data-dir", "/d", "--raft-max-append-entries", "1025"}, nil, "--raft-max-append-entries"},
		{"negative max append entries", []string{"--id", "a", "--data-dir", "/d", "--raft-max-append-entries", "-1"}, nil, "--raft-max-append-entries"},
		{"tiny heartbeat", []string{"--id", "a", "--data-dir", "/d", "--raft-heartbeat-timeout", "1ms"}, nil, "--raft-heartbeat-timeout"},
		{"negative commit timeout", []string{"--id", "a", "--data-dir", "/d", "--raft-commit-timeout", "-1s"}, nil, "--raft-commit-timeout"},
		{"coalesce window too long", []string{"--id", "a", "--data-dir", "/d", "--raft-coalesce-window", "250ms"}, nil, "--raft-coalesce-window"},
		{"coalesce window too long for the heartbeat", []string{"--id", "a", "--data-dir", "/d", "--raft-heartbeat-timeout", "200ms", "--raft-coalesce-window", "50ms"}, nil, "--raft-coalesce-window"},
		{"bad gc headroom", []string{"--id", "a", "--data-dir", "/d", "--gc-headroom", "1.5GiB"}, nil, "gc-headroom"},
		{"bad gc headroom in env", []string{"--id", "a", "--data-dir", "/d"}, map[string]string{"FRONTDESK_GC_HEADROOM": "lots"}, "FRONTDESK_GC_HEADROOM"},
		{"negative expect", []string{"--id", "a", "--data-dir", "/d", "--bootstrap-expect", "-1"}, nil, "--bootstrap-expect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFlags("x", tc.args, env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error mentioning %q, got %v", tc.want, err)
			}
		})
	}
}
