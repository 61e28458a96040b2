package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
	"github.com/frontdeskhq/frontdesk/node"
	"github.com/frontdeskhq/frontdesk/shard"
)

// TestSharedLogNode: by default (--log-store auto) a node with a new data
// dir keeps its shards' logs in DATA_DIR/raft-shared.db, serves writes, and
// exports the store's commits.
func TestSharedLogNode(t *testing.T) {
	var dir string
	n := startNode(t, func(c *node.Config) { dir = c.DataDir })
	if _, err := os.Stat(filepath.Join(dir, shard.SharedLogFile)); err != nil {
		t.Fatalf("the shared log file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shards", "0", "raft.db")); !os.IsNotExist(err) {
		t.Fatalf("a per-shard raft.db with the shared log (stat: %v)", err)
	}
	base := "http://" + n.APIAddr()
	upsert(t, base, "m")
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var commits float64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "frontdesk_sharedlog_commits_total "); ok {
			fmt.Sscan(v, &commits)
		}
	}
	if commits < 1 {
		t.Fatalf("frontdesk_sharedlog_commits_total = %v after a write; want ≥ 1", commits)
	}
}

func upsert(t *testing.T, base, merchant string) {
	t.Helper()
	admin := frontdeskv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.UpsertMerchant(context.Background(), connect.NewRequest(&pb.UpsertMerchantRequest{
		RequestId: "r-" + merchant, Merchant: &pb.UpsertMerchant{MerchantId: merchant}})); err != nil {
		t.Fatal(err)
	}
}

// TestLogStoreKeptByDataDir: a data dir written with a raft.db per shard
// stays that way under --log-store auto, and a node told to use the shared
// store on it refuses to start without touching it.
func TestLogStoreKeptByDataDir(t *testing.T) {
	dir := t.TempDir()
	in := func(store string) func(*node.Config) {
		return func(c *node.Config) { c.DataDir, c.LogStore = dir, store }
	}
	n := startNode(t, in(node.LogStorePerShard))
	upsert(t, "http://"+n.APIAddr(), "m1")
	n.Kill()

	n = startNode(t, in(node.LogStoreAuto))
	upsert(t, "http://"+n.APIAddr(), "m2")
	n.Kill()
	if _, err := os.Stat(filepath.Join(dir, shard.SharedLogFile)); !os.IsNotExist(err) {
		t.Fatalf("--log-store auto on a per-shard data dir made %s (stat: %v)", shard.SharedLogFile, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shards", "0", "raft.db")); err != nil {
		t.Fatalf("shard 0's raft.db: %v", err)
	}

	cfg := &node.Config{ID: "n1", DataDir: dir, APIAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		GossipAddr: "127.0.0.1:0", BootstrapExpect: 1, Shards: 4, FastRaft: true, LogStore: node.LogStoreShared}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if n, err := node.Start(cfg, slog.New(slog.DiscardHandler)); err == nil {
		n.Kill()
		t.Fatal("--log-store shared started on a data dir written per shard")
	} else if !strings.Contains(err.Error(), "raft.db") {
		t.Fatalf("the refusal does not say why: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, shard.SharedLogFile)); !os.IsNotExist(err) {
		t.Fatalf("the refused start left %s behind (stat: %v)", shard.SharedLogFile, err)
	}
}
