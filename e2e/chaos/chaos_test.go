// Package chaos is the chaos suite: real frontdeskd clusters under
// recorded client traffic while leaders are killed, paused and cut off,
// every node restarts and a node loses its data; then every check of
// package validate. It is its own package so that it has its own test
// timeout. The layout follows etcd's robustness suite:
//
//	e2e/cluster    drivers: run a cluster, kill/pause/partition/restart/wipe nodes
//	e2e/failpoint  the faults, each injected and healed with health checks around it
//	e2e/traffic    client load over many merchants and a hot one, recorded
//	e2e/model      the history and the model porcupine checks it against
//	e2e/validate   the checks after a run
//	e2e/report     the results folder written when a run fails
//
// The short suite runs in CI on both drivers, local processes and docker
// compose (one to two minutes each); -soak (or FRONTDESK_SOAK=1) runs at
// least 100 leader kills and every other fault twice, about half an hour
// per driver:
//
//	go test -run TestChaos/local -soak -timeout 2h ./e2e/chaos
//	go test -run TestChaos/compose -soak -timeout 2h ./e2e/chaos
package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/e2e/cluster"
	"github.com/frontdeskhq/frontdesk/e2e/failpoint"
	"github.com/frontdeskhq/frontdesk/e2e/model"
	"github.com/frontdeskhq/frontdesk/e2e/report"
	"github.com/frontdeskhq/frontdesk/e2e/traffic"
	"github.com/frontdeskhq/frontdesk/e2e/validate"
)

var soak = flag.Bool("soak", false, "run the chaos suite's soak mode: ≥100 leader kills and every other fault several times (also FRONTDESK_SOAK=1)")

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Cleanup()
	os.Exit(code)
}

// plan is what one run does.
type plan struct {
	name    string
	faults  []failpoint.Failpoint
	quiet   time.Duration // traffic alone before the first fault and after each
	traffic traffic.Config
	budget  time.Duration // the whole run, checks included
	check   time.Duration // the linearizability check, per merchant
}

const shards = 8

// The faults. Heal of each waits for the cluster to be healthy.
var (
	killLeader      = failpoint.KillLeader{}
	killFollower    = failpoint.KillFollower{Down: time.Second}
	pauseLeader     = failpoint.PauseLeader{Extra: 500 * time.Millisecond}
	partitionLeader = failpoint.PartitionLeader{Extra: time.Second}
	restartAll      = failpoint.RestartAll{}
	wipeNode        = failpoint.WipeNode{}
)

// shortPlan: 10 leader kills, one of each other fault, one to two minutes
// per driver. Its budget keeps both drivers' runs inside go test's default
// 10-minute timeout.
func shortPlan() plan {
	k := killLeader
	return plan{
		name: "short",
		faults: []failpoint.Failpoint{
			k, k, pauseLeader, k, k, partitionLeader, k, k, killFollower, k, restartAll, k, k, wipeNode, k,
		},
		quiet:  time.Second,
		budget: 4 * time.Minute,
		check:  2 * time.Minute,
	}
}

// soakPlan: 100 leader kills with another fault after every tenth, each
// other kind twice.
func soakPlan() plan {
	others := []failpoint.Failpoint{pauseLeader, partitionLeader, killFollower, restartAll, wipeNode}
	var faults []failpoint.Failpoint
	for i := 1; i <= 100; i++ {
		faults = append(faults, killLeader)
		if i%10 == 0 {
			faults = append(faults, others[(i/10-1)%len(others)])
		}
	}
	return plan{name: "soak", faults: faults, quiet: 2 * time.Second, budget: 2 * time.Hour, check: 20 * time.Minute}
}

func soakMode() bool { return *soak || os.Getenv("FRONTDESK_SOAK") == "1" }

// nodeFlags are the frontdeskd flags of every node of both drivers: small
// snapshot thresholds, so that a wiped node catches up from snapshots and
// every restart restores one. They must be small enough for the hot
// shard's log to be compacted by the time of the wipe however fast the
// run goes: with 1024/5s/256 a run whose failovers took tens of
// milliseconds reached the wipe with no log compacted.
var nodeFlags = map[string]string{"shards": strconv.Itoa(shards),
	"snapshot-threshold": "256", "snapshot-interval": "1s", "trailing-logs": "64"}

// TestChaos runs the same plan on three nodes of each driver, under
// recorded traffic, then checks: invariants of the final state of every
// shard, every acknowledged result reflected in it, linearizability per
// merchant, identical replicas at the same index, and reports the failover
// windows. On failure (or with FRONTDESK_E2E_RESULTS set) it writes a
// results folder and logs its path.
//
//   - local: frontdeskd processes on this machine, each in its own network
//     namespace when this machine allows, so that partitions are real
//     (FRONTDESK_E2E_NETNS=0 keeps them on 127.0.0.1 without partitions).
//   - compose: node1..node3 of docker-compose.yml (cluster.ComposeDriver);
//     skipped when Docker or Compose is missing, except under CI=true,
//     where that fails.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("kills, pauses and partitions frontdeskd processes")
	}
	t.Run("local", func(t *testing.T) {
		netnsErr := cluster.NetnsAvailable()
		if os.Getenv("FRONTDESK_E2E_NETNS") == "0" {
			netnsErr = errors.New("FRONTDESK_E2E_NETNS=0")
		}
		if netnsErr != nil {
			t.Logf("no network namespaces here (%v): nodes share 127.0.0.1 and partitions are skipped", netnsErr)
		}
		var args []string
		for f, v := range nodeFlags {
			if f != "shards" {
				args = append(args, "--"+f, v)
			}
		}
		d := cluster.StartLocalDriver(t, 3, cluster.Options{Shards: shards, Args: args}, netnsErr == nil)
		runChaos(t, d, netnsErr, clientBatch(0))
	})
	t.Run("compose", func(t *testing.T) {
		d := cluster.StartCompose(t, cluster.ComposeOptions{Flags: nodeFlags})
		runChaos(t, d, nil, clientBatch(256))
	})
}

// clientBatch is the traffic's client batching (client.WithBatching; 0:
// every call its own RPC): def, unless FRONTDESK_E2E_BATCH says otherwise.
// The local run sends unary calls and the compose run batches them, so
// both ways a client can call are checked under faults.
func clientBatch(def int) int {
	if n, err := strconv.Atoi(os.Getenv("FRONTDESK_E2E_BATCH")); err == nil && n >= 0 {
		return n
	}
	return def
}

// runChaos runs the plan on d and checks the outcome; noPartition, when
// not nil, says why the driver cannot partition (those faults are skipped);
// batch is the client batching of the traffic (0: none).
func runChaos(t *testing.T, d cluster.Driver, noPartition error, batch int) {
	p := shortPlan()
	if soakMode() {
		p = soakPlan()
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), p.budget)
	defer cancel()

	env := &failpoint.Env{D: d, Shards: shards, Logf: t.Logf}
	if err := env.AwaitHealthy(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	opts := []client.Option{client.WithRetry(10*time.Millisecond, 200*time.Millisecond), client.WithCallTimeout(time.Second),
		client.WithBatching(batch)} // 0: unary calls (the client's default batches)
	cl, err := client.New(ctx, d.APIAddrs(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ms := traffic.Merchants(p.traffic)
	if err := traffic.Setup(ctx, cl, ms); err != nil {
		t.Fatal(err)
	}

	h := model.NewHistory()
	tr := traffic.Start(cl, ms, h, p.traffic)
	run := &report.Run{Name: p.name, Driver: d.Name()}
	if batch > 0 {
		run.Driver += fmt.Sprintf(", client batching %d", batch)
	}
	sleep(ctx, p.quiet)
	var faults []validate.Fault
	for i, fp := range p.faults {
		if _, ok := fp.(failpoint.PartitionLeader); ok && noPartition != nil {
			run.Skipped = append(run.Skipped, fmt.Sprintf("%s: %v", fp.Name(), noPartition))
			continue
		}
		shard := target(cl, ms, i)
		in, err := failpoint.Run(ctx, env, fp, shard)
		if in != nil {
			run.Faults = append(run.Faults, in)
			faults = append(faults, validate.Fault{Kind: in.Kind, Shard: in.Shard, At: int64(in.At.Sub(h.Start()))})
		}
		if err != nil {
			t.Errorf("fault %d: %v", i+1, err)
			break
		}
		if in.Kind == wipeNode.Name() && in.Snapshots == 0 {
			t.Errorf("fault %d: the wiped node caught up without any snapshot; the snapshot path went untested", i+1)
		}
		sleep(ctx, p.quiet)
	}

	// The nodes' own count of Batch RPCs (since each last started): proof
	// that a batching run's traffic really went in batches.
	if batch > 0 {
		n := batchRPCs(ctx, d.APIAddrs())
		t.Logf("Batch RPCs served since the nodes last started: %.0f", n)
		if n == 0 {
			t.Errorf("client batching %d, but the nodes served no Batch RPC", batch)
		}
	}

	// Stop the traffic; writes left without an answer are asked again.
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	run.Indeterminate = tr.Stop(rctx)
	rcancel()
	if err := env.AwaitHealthy(ctx, 90*time.Second); err != nil {
		t.Errorf("after the traffic: %v", err)
	}
	run.Ops = h.Len()
	final, err := validate.ReadFinal(ctx, cl, h, ms)
	if err != nil {
		t.Fatal(err)
	}
	run.Final = final
	run.Violations = append(validate.Invariants(final, h), validate.Acknowledged(final, h)...)
	var bad []validate.Violation
	run.Replicas, bad = validate.Replicas(ctx, d.APIAddrs(), shards, 100)
	run.Violations = append(run.Violations, bad...)
	run.Linear, bad = validate.Linearizable(ms, h, p.check)
	run.Violations = append(run.Violations, bad...)
	run.Windows = validate.Failover(faults, h)
	run.Duration = time.Since(start)
	t.Log("\n" + run.Summary())

	if len(run.Violations) > 0 {
		t.Errorf("%d violations (see above)", len(run.Violations))
	}
	if t.Failed() || os.Getenv("FRONTDESK_E2E_RESULTS") != "" {
		dir, err := report.Dir(p.name + "-" + d.Name())
		if err == nil {
			err = report.Write(dir, run, h, ms, d)
		}
		if err != nil {
			t.Errorf("writing the results: %v", err)
		}
		t.Logf("results in %s", dir)
	}
}

// target is the shard of the i-th fault: the hot merchant's every other
// time, else each merchant's in turn.
func target(cl *client.Client, ms []*model.Merchant, i int) uint32 {
	if i%2 == 0 {
		return cl.ShardOf(traffic.Hot)
	}
	return cl.ShardOf(ms[(i/2)%len(ms)].ID)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// batchRPCs sums frontdesk_rpc_requests_total of the Batch procedure over
// the nodes' /metrics (nodes that do not answer count 0).
func batchRPCs(ctx context.Context, addrs []string) float64 {
	const prefix = `frontdesk_rpc_requests_total{code="ok",procedure="/frontdesk.v1.DispatchService/Batch"} `
	hc := &http.Client{Timeout: 3 * time.Second}
	var total float64
	for _, a := range addrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+"/metrics", nil)
		if err != nil {
			continue
		}
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, prefix); ok {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					total += f
				}
			}
		}
	}
	return total
}
