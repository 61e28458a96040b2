// Command fdbench measures frontdesk: workload W1 against a cluster
// (`fdbench w1`), the same workload applied straight to hashicorp/raft
// running the project's state machine (`fdbench ceiling`), both
// alternating (`fdbench w1 --vs-ceiling`), and leader failover under load
// (`fdbench failover`). See BENCHMARKS.md for W1's definition and the
// figures measured with it.
//
//	fdbench w1 --local 3 -c 64 -d 30s        # three frontdeskd processes it starts itself
//	fdbench w1 --addr 10.0.0.1:7420,10.0.0.2:7420 -c 256 -d 60s --json
//	fdbench ceiling -c 256 -d 30s
//	fdbench inproc --shards 16 -c 256 -d 30s  # the shard layer alone, no RPC
//	fdbench w1 --local 3 --vs-ceiling -c 256 -d 20s --rounds 3
//	fdbench failover --local 3 --kills 20 -c 32
//
// A progress line is printed to stderr every second; the final table (or
// with --json one JSON object) goes to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "fdbench:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: fdbench <command> [flags]

commands:
  w1        workload W1 against a cluster (--addr) or local nodes (--local 3)
  ceiling   W1 applied straight to an in-process 3-node hashicorp/raft cluster
  inproc    W1 through shard.Group.Propose on 3 in-process shard hosts (no RPC)
  failover  SIGKILL a shard's leader under W1 load, --kills times: windows of
            that shard and of every other shard its node led

Run "fdbench <command> -h" for its flags.
`

// run is fdbench with its arguments, output and error streams.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	cmd, args := args[0], args[1:]
	o, err := parseFlags(cmd, args, stderr)
	if err != nil {
		return err
	}
	if o.cpuProfilePath != "" {
		f, err := os.Create(o.cpuProfilePath)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		o.cpuProfile = f
	}
	switch cmd {
	case "w1":
		if o.vsCeiling {
			return runVsCeiling(ctx, o, stdout, stderr)
		}
		return runW1Cmd(ctx, o, stdout, stderr)
	case "ceiling":
		return runCeilingCmd(ctx, o, stdout, stderr)
	case "inproc":
		return runInprocCmd(ctx, o, stdout, stderr)
	case "failover":
		return runFailoverCmd(ctx, o, stdout, stderr)
	}
	return fmt.Errorf("unknown command %q", cmd)
}
