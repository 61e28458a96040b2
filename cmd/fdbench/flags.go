package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
)

// options are every command's flags (each command uses its share).
type options struct {
	conc      int
	duration  time.Duration
	warmup    time.Duration
	surge     bool
	json      bool
	opTimeout time.Duration
	setupConc int
	// cpuProfilePath (--cpuprofile): fdbench's own CPU profile over the
	// measured window; cpuProfile is that file, opened by run.
	cpuProfilePath string
	cpuProfile     io.Writer

	addrs      []string
	local      int
	shards     int
	frontdeskd string
	nodeArgs   []string // --node-args
	keep       bool
	clients    int
	batch      int
	clientLog  string // --client-log
	gcPercent  int    // --gc-percent: fdbench's own, while it loads a cluster

	sharedLog    bool // inproc
	sharedLinger time.Duration

	groups    int // ceiling
	vsCeiling bool
	rounds    int

	kills    int // failover
	shard    int
	calm     time.Duration
	interval time.Duration
}

func parseFlags(cmd string, args []string, stderr io.Writer) (*options, error) {
	switch cmd {
	case "w1", "ceiling", "failover", "inproc":
	default:
		fmt.Fprint(stderr, usage)
		return nil, fmt.Errorf("unknown command %q", cmd)
	}
	o := &options{groups: 1}
	fs := flag.NewFlagSet("fdbench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.conc, "c", 64, "concurrency: clients looping over W1 at once")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before the measured window (not counted)")
	fs.BoolVar(&o.surge, "surge", false, "surge variant: the top 10 merchants ramp to 20× their share over 60 s")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of the table")
	fs.DurationVar(&o.opTimeout, "op-timeout", 10*time.Second, "give up on one op (retries included) after this long; counted as an error")
	fs.StringVar(&o.cpuProfilePath, "cpuprofile", "", "write fdbench's own CPU profile over the measured window to this file, for go tool pprof (the client's work; for ceiling and inproc also the in-process raft cluster's)")
	fs.IntVar(&o.setupConc, "setup-c", 256, "concurrency of the setup of W1's 1,000 merchants (each merchant's 43 commands in order)")
	if cmd == "inproc" {
		fs.IntVar(&o.shards, "shards", 16, "shards (raft groups), each with 3 voters")
		fs.BoolVar(&o.sharedLog, "shared-log", false, "each host keeps every shard's log in one shared store (shard.HostConfig.SharedLog) instead of a bolt file per replica")
		fs.DurationVar(&o.sharedLinger, "shared-log-linger", 0, "with --shared-log: sharedlog.Options.MaxLinger (0 or negative: none, the default)")
	}
	if cmd != "ceiling" && cmd != "inproc" {
		fs.Func("addr", "comma-separated API addresses of a running cluster (host:port)", func(s string) error {
			for _, a := range strings.Split(s, ",") {
				if a = strings.TrimSpace(a); a != "" {
					o.addrs = append(o.addrs, a)
				}
			}
			return nil
		})
		fs.IntVar(&o.local, "local", 0, "start this many frontdeskd processes on 127.0.0.1 (killed at the end)")
		fs.IntVar(&o.shards, "shards", 16, "with --local: the cluster's shard count")
		fs.StringVar(&o.frontdeskd, "frontdeskd", "", "with --local: the frontdeskd binary (default: go build it from this module)")
		fs.BoolVar(&o.keep, "keep", false, "with --local: keep the nodes' data dirs and logs")
		fs.Func("node-args", "with --local: extra frontdeskd flags for every node, space-separated, after fdbench's own (so they win), e.g. \"--log-store per-shard --log-level info\"", func(s string) error {
			o.nodeArgs = append(o.nodeArgs, strings.Fields(s)...)
			return nil
		})
		fs.IntVar(&o.clients, "clients", 1, "client.Client instances (each with its own connection per node), used in turn")
		fs.StringVar(&o.clientLog, "client-log", "", "write the client's debug log (retries, redirects, shard map refreshes), ops slower than 250 ms and, for failover, each kill and each shard's recovery to this file as JSON lines")
		fs.IntVar(&o.gcPercent, "gc-percent", defaultGCPercent, "fdbench's own garbage collector target (runtime/debug.SetGCPercent) while it loads the cluster, not the nodes'; 0 or less: the runtime's (GOGC). The ceiling, which runs raft in this process, always runs with the runtime's")
		fs.IntVar(&o.batch, "batch", client.DefaultBatchCalls, "client batching (client.WithBatching): up to this many concurrent calls to a node per Batch RPC; 0 = off, every call its own RPC")
	}
	if cmd == "ceiling" {
		fs.IntVar(&o.groups, "groups", 1, "ceiling: raft groups (merchants spread over them like over shards)")
	}
	if cmd == "w1" {
		fs.BoolVar(&o.vsCeiling, "vs-ceiling", false, "also run the ceiling, alternating with W1, and print the ratio")
		fs.IntVar(&o.rounds, "rounds", 2, "with --vs-ceiling: how many W1 + ceiling pairs")
	}
	if cmd == "failover" {
		fs.IntVar(&o.kills, "kills", 5, "how many times to SIGKILL the shard's leader")
		fs.IntVar(&o.shard, "shard", -1, "the shard whose leader is killed (default: the hottest merchant's)")
		fs.DurationVar(&o.calm, "calm", 10*time.Second, "W1 without faults first, counting leader changes")
		fs.DurationVar(&o.interval, "interval", 3*time.Second, "load between a restarted node being ready and the next kill")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	switch {
	case o.conc < 1:
		return nil, errors.New("-c must be at least 1")
	case o.batch < 0:
		return nil, errors.New("--batch must not be negative")
	case o.clients < 0:
		return nil, errors.New("--clients must not be negative")
	case o.duration <= 0:
		return nil, errors.New("-d must be positive")
	case o.warmup < 0:
		return nil, errors.New("--warmup must not be negative")
	case o.groups < 1 && cmd == "ceiling":
		return nil, errors.New("--groups must be at least 1")
	case cmd == "w1" && o.local == 0 && len(o.addrs) == 0:
		return nil, errors.New("w1 needs --addr or --local")
	case cmd == "failover" && o.local == 0:
		return nil, errors.New("failover needs --local (it kills and restarts the nodes)")
	case o.local > 0 && len(o.addrs) > 0:
		return nil, errors.New("--addr and --local exclude each other")
	case o.vsCeiling && o.rounds < 1:
		return nil, errors.New("--rounds must be at least 1")
	case o.vsCeiling && o.cpuProfilePath != "":
		return nil, errors.New("--cpuprofile profiles one run: not with --vs-ceiling")
	}
	return o, nil
}
