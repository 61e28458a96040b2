package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/internal/localnode"
)

// ComposeDriver runs node1..node3 of the repository's docker-compose.yml
// as a Driver: Kill is docker kill (SIGKILL), Start docker start, Pause
// and Resume docker pause/unpause (the cgroup freezer), Partition docker
// network disconnect, Wipe removes the stopped container and its volume
// (Start then creates both afresh), Log is docker logs.
//
// An override file, written to a temp dir, gives every node two networks
// with fixed addresses: a peer network (10.214.X.0/24) where nodes
// advertise themselves (--advertise) and reach each other — Raft, gossip
// and node-to-node API calls — and a client network (10.215.X.0/24, no
// traffic between containers) where the test reaches every node's API at
// its container IP. Partition disconnects a node from the peer network
// only: its peers lose it and clients still reach it. Heal connects it
// again with the same address, so what the node advertises stays true.
// The override also sets restart: "no" (a killed node stays down until
// Start), container and volume names, and frontdeskd flags as
// FRONTDESK_<FLAG> variables.
//
// The test must reach container IPs (Docker on Linux, not Docker Desktop).
type ComposeDriver struct {
	t       testing.TB
	compose *Compose
	subnet  int // X
	nodes   []*composeNode

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a node's state changes
	watcher error         // why docker events stopped, once it has
}

type composeNode struct {
	id        string // the service name too
	container string
	volume    string
	peerIP    string
	clientIP  string

	// Set by the docker events watcher, under mu.
	running bool // started and not died (paused counts)

	removed     bool   // Wipe removed the container; Start creates it
	partitioned bool   // disconnected from the peer network
	oldLogs     []byte // logs of the containers Wipe removed
}

// ComposeOptions shape a compose cluster.
type ComposeOptions struct {
	// Flags are frontdeskd flags for every node, by name without dashes
	// ("snapshot-threshold": "1024"); they become FRONTDESK_<FLAG>
	// variables in the override file. dead-after defaults to 30s.
	Flags map[string]string
}

// composeNodes is how many nodes of docker-compose.yml form the cluster
// (node4 joins by its profile and is not used).
const composeNodes = 3

var _ Driver = (*ComposeDriver)(nil)

// StartCompose builds the image and starts node1..node3 of
// docker-compose.yml under a project of this test's own, and waits until
// every node answers on its client address. It skips t when Docker or
// Compose is missing (fails it under CI=true; see RequireCompose).
// Containers, volumes, networks and the image are removed when the test
// ends, whatever its outcome.
func StartCompose(t testing.TB, opts ComposeOptions) *ComposeDriver {
	t.Helper()
	argv := RequireCompose(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	project, image := Names(ctx)
	start := time.Now()
	BuildImage(t, ctx, image)
	t.Logf("compose driver: image %s built in %v; using %s, project %s", image, time.Since(start).Round(time.Millisecond),
		strings.Join(argv, " "), project)

	dir := t.TempDir()
	d := &ComposeDriver{t: t, changed: make(chan struct{}), compose: &Compose{
		Argv:    argv,
		Files:   []string{filepath.Join(RepoRoot(t), "docker-compose.yml"), filepath.Join(dir, "override.yml")},
		Project: project,
	}}
	for i := range composeNodes {
		id := fmt.Sprintf("node%d", i+1)
		d.nodes = append(d.nodes, &composeNode{id: id, container: project + "-" + id, volume: project + "-" + id + "-data"})
	}
	if err := d.watch(start.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			for i, nd := range d.nodes {
				b, _ := d.Log(i)
				t.Logf("---- %s log (container %s), last lines:\n%s", nd.id, nd.container, localnode.TailString(string(b), 60))
			}
		}
		if err := d.compose.Down(ctx); err != nil {
			t.Errorf("removing compose project %s: %v", project, err)
		}
	})

	// The subnets are picked at random among those no Docker network or
	// local interface uses, and the file publishes each API port on the
	// host's loopback (the driver does not use them, but they must be
	// free); another test may take the same at the same moment, so a clash
	// is tried again.
	start = time.Now()
	for attempt := 1; ; attempt++ {
		if err := d.pickSubnet(ctx); err != nil {
			t.Fatal(err)
		}
		d.compose.Env = []string{"FRONTDESK_IMAGE=" + image}
		for i := range d.nodes {
			d.compose.Env = append(d.compose.Env, fmt.Sprintf("FRONTDESK_NODE%d_PORT=%d", i+1, freePort(t)))
		}
		if err := os.WriteFile(d.compose.Files[1], []byte(d.override(opts)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := d.compose.Try(ctx, "up", "-d", "--no-build")
		if err == nil {
			break
		}
		clash := strings.Contains(out, "overlap") || strings.Contains(out, "already allocated") || strings.Contains(out, "address already in use")
		if attempt == 3 || !clash {
			t.Fatalf("compose up: %v\n%s", err, out)
		}
		t.Logf("compose up: subnet %d or a port taken, trying others: %s", d.subnet, strings.TrimSpace(out))
		if err := d.compose.Down(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range d.nodes {
		if err := d.await(i, true, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.reachable(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("compose driver: %d nodes up %v after compose up; API at %v, peers on 10.214.%d.0/24",
		len(d.nodes), time.Since(start).Round(time.Millisecond), d.APIAddrs(), d.subnet)
	return d
}

// pickSubnet picks X such that 10.214.X.0/24 and 10.215.X.0/24 overlap no
// Docker network and no address of this host, and sets the nodes'
// addresses in them.
func (d *ComposeDriver) pickSubnet(ctx context.Context) error {
	var used []*net.IPNet
	ids, err := docker(ctx, "network", "ls", "-q")
	if err != nil {
		return err
	}
	for _, id := range strings.Fields(ids) {
		// One at a time: another test may remove a network meanwhile.
		out, _ := docker(ctx, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", id)
		for _, s := range strings.Fields(out) {
			if _, n, err := net.ParseCIDR(s); err == nil {
				used = append(used, n)
			}
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				used = append(used, n)
			}
		}
	}
	free := func(cidr string) bool {
		_, n, _ := net.ParseCIDR(cidr)
		for _, u := range used {
			if u.Contains(n.IP) || n.Contains(u.IP) {
				return false
			}
		}
		return true
	}
	for range 100 {
		x := 1 + rand.IntN(250)
		if x == d.subnet || !free(fmt.Sprintf("10.214.%d.0/24", x)) || !free(fmt.Sprintf("10.215.%d.0/24", x)) {
			continue
		}
		d.subnet = x
		for i, nd := range d.nodes {
			nd.peerIP = fmt.Sprintf("10.214.%d.%d", x, 11+i)
			nd.clientIP = fmt.Sprintf("10.215.%d.%d", x, 11+i)
		}
		return nil
	}
	return errors.New("compose driver: no free 10.214.X.0/24 and 10.215.X.0/24")
}

func (d *ComposeDriver) peerNetwork() string   { return d.compose.Project + "-peer" }
func (d *ComposeDriver) clientNetwork() string { return d.compose.Project + "-client" }

// override is the compose file laid over docker-compose.yml.
func (d *ComposeDriver) override(opts ComposeOptions) string {
	env := map[string]string{"FRONTDESK_DEAD_AFTER": "30s"}
	for f, v := range opts.Flags {
		env["FRONTDESK_"+strings.ToUpper(strings.ReplaceAll(f, "-", "_"))] = v
	}
	var join []string
	for _, nd := range d.nodes {
		join = append(join, net.JoinHostPort(nd.peerIP, "7422"))
	}
	env["FRONTDESK_JOIN"] = strings.Join(join, ",")
	keys := make([]string, 0, len(env)+1)
	for k := range env {
		keys = append(keys, k)
	}
	keys = append(keys, "FRONTDESK_ADVERTISE")
	slices.Sort(keys)

	var b strings.Builder
	b.WriteString("# Written by e2e/cluster.ComposeDriver, laid over docker-compose.yml.\nservices:\n")
	for _, nd := range d.nodes {
		fmt.Fprintf(&b, "  %s:\n    container_name: %s\n    restart: \"no\"\n    environment:\n", nd.id, nd.container)
		for _, k := range keys {
			v := env[k]
			if k == "FRONTDESK_ADVERTISE" {
				v = nd.peerIP // Raft, gossip and API addresses on the peer network
			}
			fmt.Fprintf(&b, "      %s: %s\n", k, strconv.Quote(v))
		}
		fmt.Fprintf(&b, "    networks:\n      peer:\n        ipv4_address: %s\n      client:\n        ipv4_address: %s\n", nd.peerIP, nd.clientIP)
	}
	fmt.Fprintf(&b, "networks:\n  peer:\n    name: %s\n    ipam:\n      config:\n        - subnet: 10.214.%d.0/24\n", d.peerNetwork(), d.subnet)
	fmt.Fprintf(&b, "  client:\n    name: %s\n    driver_opts:\n      com.docker.network.bridge.enable_icc: \"false\"\n    ipam:\n      config:\n        - subnet: 10.215.%d.0/24\n",
		d.clientNetwork(), d.subnet)
	b.WriteString("volumes:\n")
	for _, nd := range d.nodes {
		fmt.Fprintf(&b, "  %s-data:\n    name: %s\n", nd.id, nd.volume)
	}
	return b.String()
}

// watch follows docker events of the project's containers from since on:
// start and die set whether a node is running, so that Running is true
// to what Docker sees (a node that crashes is not running) and costs no
// docker call. It stops when the test ends.
func (d *ComposeDriver) watch(since time.Time) error {
	cmd := exec.Command("docker", "events", "--since", fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		"--filter", "type=container", "--filter", "label=com.docker.compose.project="+d.compose.Project,
		"--format", "{{.Actor.Attributes.name}} {{.Action}}")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("docker events: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			name, action, _ := strings.Cut(sc.Text(), " ")
			if action != "start" && action != "die" {
				continue
			}
			for _, nd := range d.nodes {
				if nd.container == name {
					d.mu.Lock()
					nd.running = action == "start"
					d.changedLocked()
					d.mu.Unlock()
				}
			}
		}
		err := cmd.Wait()
		d.mu.Lock()
		d.watcher = fmt.Errorf("docker events stopped: %v", err)
		d.changedLocked()
		d.mu.Unlock()
	}()
	d.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return nil
}

func (d *ComposeDriver) changedLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// await waits until Docker reports node i running (or not).
func (d *ComposeDriver) await(i int, running bool, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		d.mu.Lock()
		now, changed, werr := d.nodes[i].running, d.changed, d.watcher
		d.mu.Unlock()
		if now == running {
			return nil
		}
		if werr != nil {
			return werr
		}
		select {
		case <-changed:
		case <-deadline:
			state, _ := docker(context.Background(), "inspect", "-f", "{{.State.Status}}", d.nodes[i].container)
			return fmt.Errorf("%s: running=%v not seen within %v (docker says %q)", d.nodes[i].id, running, timeout, state)
		}
	}
}

// reachable waits until every node's API accepts connections at its
// client address.
func (d *ComposeDriver) reachable(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, a := range d.APIAddrs() {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("compose driver: the test cannot reach %s (the nodes' container IP on the client network; Docker on Linux is needed): %v", a, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func (d *ComposeDriver) Name() string        { return "compose" }
func (d *ComposeDriver) Size() int           { return len(d.nodes) }
func (d *ComposeDriver) NodeID(i int) string { return d.nodes[i].id }

// APIAddrs are the nodes' client-network addresses.
func (d *ComposeDriver) APIAddrs() []string {
	out := make([]string, len(d.nodes))
	for i, nd := range d.nodes {
		out[i] = net.JoinHostPort(nd.clientIP, "7420")
	}
	return out
}

func (d *ComposeDriver) Running(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodes[i].running
}

func (d *ComposeDriver) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

// Kill SIGKILLs the container (paused or not) and waits until Docker
// reports it died.
func (d *ComposeDriver) Kill(i int) error {
	if !d.Running(i) {
		return nil
	}
	ctx, cancel := d.ctx()
	defer cancel()
	if _, err := docker(ctx, "kill", d.nodes[i].container); err != nil && d.Running(i) {
		return err
	}
	return d.await(i, false, 20*time.Second)
}

// Start starts the stopped container, or creates it (with a new volume)
// after Wipe, and waits until Docker reports it running.
func (d *ComposeDriver) Start(i int) error {
	nd := d.nodes[i]
	if d.Running(i) {
		return fmt.Errorf("%s is already running", nd.id)
	}
	ctx, cancel := d.ctx()
	defer cancel()
	if nd.removed {
		if out, err := d.compose.Try(ctx, "up", "-d", "--no-build", "--no-deps", nd.id); err != nil {
			return fmt.Errorf("compose up %s: %v\n%s", nd.id, err, out)
		}
		nd.removed, nd.partitioned = false, false
	} else if _, err := docker(ctx, "start", nd.container); err != nil {
		return err
	}
	return d.await(i, true, 30*time.Second)
}

func (d *ComposeDriver) Pause(i int) error  { return d.freeze(i, "pause") }
func (d *ComposeDriver) Resume(i int) error { return d.freeze(i, "unpause") }

func (d *ComposeDriver) freeze(i int, what string) error {
	if !d.Running(i) {
		return fmt.Errorf("%s %s: not running", what, d.nodes[i].id)
	}
	ctx, cancel := d.ctx()
	defer cancel()
	_, err := docker(ctx, what, d.nodes[i].container)
	return err
}

// Partition disconnects node i from the peer network and checks that its
// API still answers connections on the client network.
func (d *ComposeDriver) Partition(i int) error {
	nd := d.nodes[i]
	ctx, cancel := d.ctx()
	defer cancel()
	if _, err := docker(ctx, "network", "disconnect", d.peerNetwork(), nd.container); err != nil {
		return err
	}
	nd.partitioned = true
	if d.Running(i) {
		c, err := net.DialTimeout("tcp", d.APIAddrs()[i], 2*time.Second)
		if err != nil {
			return fmt.Errorf("%s partitioned, but clients cannot reach it: %w", nd.id, err)
		}
		c.Close()
	}
	return nil
}

// Heal connects every partitioned node to the peer network again, with
// the address it advertises and its service name as alias. First it checks
// that the partition held: a running partitioned node must not reach any
// other node's API at the address that node advertises.
func (d *ComposeDriver) Heal() error {
	ctx, cancel := d.ctx()
	defer cancel()
	var errs []error
	for i, nd := range d.nodes {
		if !nd.partitioned {
			continue
		}
		if d.Running(i) {
			if err := d.cutOff(ctx, i); err != nil {
				errs = append(errs, err)
			}
		}
		if _, err := docker(ctx, "network", "connect", "--ip", nd.peerIP, "--alias", nd.id, d.peerNetwork(), nd.container); err != nil {
			errs = append(errs, err)
			continue
		}
		ip, err := docker(ctx, "inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", d.peerNetwork()), nd.container)
		if err == nil && ip != nd.peerIP {
			err = fmt.Errorf("%s reconnected at %s, but advertises %s", nd.id, ip, nd.peerIP)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		nd.partitioned = false
	}
	return errors.Join(errs...)
}

// cutOff checks from inside node i's container, with frontdeskd
// healthcheck (the image has nothing else), that no other node's API
// answers, neither at its peer-network address (the one it advertises)
// nor at its client-network address.
func (d *ComposeDriver) cutOff(ctx context.Context, i int) error {
	var addrs []string
	for j, peer := range d.nodes {
		if j != i {
			addrs = append(addrs, net.JoinHostPort(peer.peerIP, "7420"), net.JoinHostPort(peer.clientIP, "7420"))
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(addrs))
	for k, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.CommandContext(ctx, "docker", "exec", d.nodes[i].container,
				"/frontdeskd", "healthcheck", "--api-addr", addr, "--timeout", "1s").CombinedOutput()
			// A request that reached the node fails with its status
			// ("healthcheck: http://...: 503 ..."); one that did not, with
			// the client's error (`Get "http://...": dial tcp ...`).
			if err == nil || !strings.Contains(string(out), `Get "`) {
				errs[k] = fmt.Errorf("%s was partitioned, yet it reaches %s: %v %s",
					d.nodes[i].id, addr, err, strings.TrimSpace(string(out)))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Wipe removes stopped node i's container and volume (keeping its log);
// Start creates them afresh with the same name, id and addresses.
func (d *ComposeDriver) Wipe(i int) error {
	nd := d.nodes[i]
	if d.Running(i) {
		return fmt.Errorf("wipe %s: stop it first", nd.id)
	}
	if nd.removed {
		return nil
	}
	ctx, cancel := d.ctx()
	defer cancel()
	logs, err := d.Log(i)
	if err != nil {
		return err
	}
	if _, err := docker(ctx, "rm", "-f", nd.container); err != nil {
		return err
	}
	nd.oldLogs, nd.removed = logs, true
	_, err = docker(ctx, "volume", "rm", nd.volume)
	return err
}

// Log returns the logs of node i's containers: those Wipe removed, then
// the current one's.
func (d *ComposeDriver) Log(i int) ([]byte, error) {
	nd := d.nodes[i]
	out := slices.Clone(nd.oldLogs)
	if nd.removed {
		return out, nil
	}
	ctx, cancel := d.ctx()
	defer cancel()
	b, err := exec.CommandContext(ctx, "docker", "logs", nd.container).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("docker logs %s: %v: %s", nd.container, err, b)
	}
	return append(out, b...), nil
}

// WaitReady polls /readyz of every running node until each answers 200.
func (d *ComposeDriver) WaitReady(ctx context.Context) error { return waitReady(ctx, d) }
