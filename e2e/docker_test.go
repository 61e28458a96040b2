package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/node/nodetest"
)

// compose runs the repository's docker-compose.yml under one project name
// with whichever Compose is installed: the docker compose plugin or the
// standalone docker-compose.
type compose struct {
	t       *testing.T
	argv    []string // "docker compose" or "docker-compose"
	file    string
	project string
	env     []string
}

// findCompose returns the Compose command line, or why there is none.
func findCompose() ([]string, error) {
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("docker is not usable: %v: %s", err, bytes.TrimSpace(out))
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}, nil
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}, nil
	}
	return nil, fmt.Errorf("neither the docker compose plugin nor docker-compose is installed")
}

// run runs a compose subcommand and fails the test if it fails.
func (c *compose) run(ctx context.Context, args ...string) string {
	c.t.Helper()
	out, err := c.try(ctx, args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", strings.Join(c.argv, " "), strings.Join(args, " "), err, out)
	}
	return out
}

func (c *compose) try(ctx context.Context, args ...string) (string, error) {
	full := append(append([]string{}, c.argv[1:]...), "-f", c.file, "-p", c.project)
	cmd := exec.CommandContext(ctx, c.argv[0], append(full, args...)...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// dockerImage builds the image of the repository's Dockerfile from a
// temporary context holding static builds of frontdeskd and fdctl (the
// working tree stays untouched) and returns its tag; the image is removed
// when the test ends.
func dockerImage(t *testing.T, ctx context.Context, tag string) {
	t.Helper()
	dir := t.TempDir()
	for _, cmd := range []string{"frontdeskd", "fdctl"} {
		build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "dist", cmd), "github.com/frontdeskhq/frontdesk/cmd/"+cmd)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	df, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
}

func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the repository")
	}
	return filepath.Dir(filepath.Dir(file))
}

func randomSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func freeHostPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

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
	argv, err := findCompose()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and Docker cannot run the compose test: %v", err)
		}
		t.Skipf("skipping the docker compose test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	suffix := randomSuffix()
	image := "frontdesk-e2e:" + suffix
	start := time.Now()
	dockerImage(t, ctx, image)
	t.Logf("image %s built in %v", image, time.Since(start).Round(time.Millisecond))

	ports := map[string]int{}
	c := &compose{t: t, argv: argv, file: filepath.Join(repoRoot(t), "docker-compose.yml"), project: "fde2e" + suffix,
		env: []string{"FRONTDESK_IMAGE=" + image, "FRONTDESK_DEAD_AFTER=3s"}}
	for _, n := range []string{"node1", "node2", "node3", "node4"} {
		ports[n] = freeHostPort(t)
		c.env = append(c.env, fmt.Sprintf("FRONTDESK_%s_PORT=%d", strings.ToUpper(n), ports[n]))
	}
	addr := func(n string) string { return "127.0.0.1:" + strconv.Itoa(ports[n]) }
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		if t.Failed() {
			out, _ := c.try(dctx, "--profile", "grow", "logs", "--tail", "40")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := c.try(dctx, "--profile", "grow", "down", "-v", "--remove-orphans", "-t", "2"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	t.Logf("using %s, project %s", strings.Join(argv, " "), c.project)

	start = time.Now()
	c.run(ctx, "up", "-d", "--no-build")
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
	c.run(ctx, "--profile", "grow", "up", "-d", "--no-build", "node4")
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
	c.run(ctx, "kill", "node2")
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
