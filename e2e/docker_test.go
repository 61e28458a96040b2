package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/e2e/cluster"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/node/nodetest"
)

// TestDockerCompose runs the repository's docker-compose.yml: it builds the
// image, brings the three nodes up under a project of its own, waits until
// they are healthy, serves a merchant through the published API ports,
// starts node4 by its profile and checks it receives replicas, kills a
// container and checks the cluster heals onto the three nodes left, then
// tears everything down (volumes too). It skips when Docker or Compose is
// missing, except under CI=true, where that fails.
func TestDockerCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image and runs containers")
	}
	argv := cluster.RequireCompose(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	project, image := cluster.Names(ctx)
	start := time.Now()
	cluster.BuildImage(t, ctx, image)
	t.Logf("image %s built in %v", image, time.Since(start).Round(time.Millisecond))

	ports := map[string]int{}
	c := &cluster.Compose{Argv: argv, Files: []string{filepath.Join(cluster.RepoRoot(t), "docker-compose.yml")}, Project: project,
		Env: []string{"FRONTDESK_IMAGE=" + image, "FRONTDESK_DEAD_AFTER=3s"}}
	for _, n := range []string{"node1", "node2", "node3", "node4"} {
		ports[n] = cluster.FreePort(t)
		c.Env = append(c.Env, fmt.Sprintf("FRONTDESK_%s_PORT=%d", strings.ToUpper(n), ports[n]))
	}
	addr := func(n string) string { return "127.0.0.1:" + strconv.Itoa(ports[n]) }
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		if t.Failed() {
			out, _ := c.Try(dctx, "--profile", "grow", "logs", "--tail", "40")
			t.Logf("compose logs:\n%s", out)
		}
		if err := c.Down(dctx); err != nil {
			t.Error(err)
		}
	})
	t.Logf("using %s, project %s", strings.Join(argv, " "), c.Project)

	start = time.Now()
	c.Run(t, ctx, "up", "-d", "--no-build")
	for _, n := range []string{"node1", "node2", "node3"} {
		waitReadyz(t, ctx, addr(n), 2*time.Minute)
	}
	t.Logf("three nodes healthy %v after compose up", time.Since(start).Round(time.Millisecond))
	waitPlacedAt(t, ctx, []string{addr("node1"), addr("node2"), addr("node3")}, []string{"node1", "node2", "node3"}, time.Minute)

	// Client flows through the published ports (the client then reaches
	// each shard's leader at the address it advertises).
	cl, err := client.New(ctx, []string{addr("node1"), addr("node2"), addr("node3")},
		client.WithRetry(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	setupShop(t, ctx, cl, "dockershop", 2, 1, &pb.MerchantSettings{QueueEnabled: true})
	var sessions []string
	for _, b := range []string{"b1", "b2", "b3"} {
		r, err := cl.Consult(ctx, &pb.Consult{MerchantId: "dockershop", BuyerId: b})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, r.SessionId)
	}
	if q, err := cl.GetQueue(ctx, "dockershop", "pre", 10); err != nil || q.Length != 1 {
		t.Fatalf("queue after 3 consults with 2 agents of limit 1: %v, %v; want 1 waiting", q, err)
	}

	// node4 joins by gossip and receives replicas.
	start = time.Now()
	c.Run(t, ctx, "--profile", "grow", "up", "-d", "--no-build", "node4")
	waitReadyz(t, ctx, addr("node4"), 2*time.Minute)
	all := []string{addr("node1"), addr("node2"), addr("node3"), addr("node4")}
	l := waitPlacedAt(t, ctx, all, []string{"node1", "node2", "node3", "node4"}, 2*time.Minute)
	held := 0
	for _, hs := range l.Holders {
		for _, h := range hs {
			if h == "node4" {
				held++
			}
		}
	}
	if held == 0 {
		t.Fatal("node4 holds no replica")
	}
	t.Logf("node4 joined and holds %d replicas, %v after its start; leaders per node %v", held, time.Since(start).Round(time.Millisecond), l.LeaderCounts())

	// A container dies and stays dead: its replicas move to the others.
	killed := time.Now()
	c.Run(t, ctx, "kill", "node2")
	live := []string{addr("node1"), addr("node3"), addr("node4")}
	waitPlacedAt(t, ctx, live, []string{"node1", "node3", "node4"}, 2*time.Minute)
	t.Logf("node2 killed: every shard back to 3 live voters after %v", time.Since(killed).Round(time.Millisecond))
	for _, sid := range sessions {
		if _, err := cl.GetSession(ctx, "dockershop", sid); err != nil {
			t.Fatalf("session %s after node2 died: %v", sid, err)
		}
	}
	checkLimits(t, ctx, cl, "dockershop")
}

// waitReadyz polls a node's /readyz until it answers 200.
func waitReadyz(t *testing.T, ctx context.Context, addr string, timeout time.Duration) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	eventually(t, timeout, func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s/readyz: %s", addr, resp.Status)
		}
		return nil
	})
}

// waitPlacedAt waits until the nodes at addrs report the placement over
// ids (see nodetest.Layout.Placed) and returns their layout.
func waitPlacedAt(t *testing.T, ctx context.Context, addrs, ids []string, timeout time.Duration) *nodetest.Layout {
	t.Helper()
	var l *nodetest.Layout
	eventually(t, timeout, func() error {
		st := map[string]*pb.GetStatusResponse{}
		for _, a := range addrs {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			s, err := nodetest.Status(sctx, a)
			cancel()
			if err != nil {
				return err
			}
			st[s.NodeId] = s
		}
		var err error
		if l, err = nodetest.LayoutOf(st); err != nil {
			return err
		}
		return l.Placed(ids, 3)
	})
	return l
}
