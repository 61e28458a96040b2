package node_test

import (
	"context"
	"fmt"
	"io"
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

// TestSharedLogNode: with --shared-log a node keeps its shards' logs in
// DATA_DIR/raft-shared.db, serves writes, and exports the store's commits.
func TestSharedLogNode(t *testing.T) {
	var dir string
	n := startNode(t, func(c *node.Config) { c.SharedLog, dir = true, c.DataDir })
	if _, err := os.Stat(filepath.Join(dir, shard.SharedLogFile)); err != nil {
		t.Fatalf("the shared log file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shards", "0", "raft.db")); !os.IsNotExist(err) {
		t.Fatalf("a per-shard raft.db with --shared-log (stat: %v)", err)
	}
	base := "http://" + n.APIAddr()
	admin := frontdeskv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.UpsertMerchant(context.Background(), connect.NewRequest(&pb.UpsertMerchantRequest{
		RequestId: "r", Merchant: &pb.UpsertMerchant{MerchantId: "m"}})); err != nil {
		t.Fatal(err)
	}
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
