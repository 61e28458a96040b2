// Command fdctl operates a frontdesk cluster: cluster status, merchant
// configuration from YAML, live queues and agents, leadership transfers and
// node drains. It talks to any node through the Go client; output is a
// table for people, or JSON with --json.
//
//	fdctl [--addr host:port,...] [--token t] [--json] [--timeout 30s] <command> [arguments]
//
//	status                          nodes (gossip) and shards (leader, voters, placement, commit, lag)
//	apply -f file.yaml              create or update merchants, their groups and agents
//	get merchant <id> [--yaml]      a merchant's settings, groups and agents (--yaml: as apply reads it)
//	queue <merchant>                buyers waiting in each group's queue, live
//	agents <merchant>               agents with status, load and limit
//	leader transfer <shard> [node]  move a shard's leadership (to a node, or any up-to-date voter)
//	node drain <id> [--wait] [--cancel]
//	token issue --secret-file F --role R [--merchant M[,M]|*] [--agent A] [--ttl D]
//	                                move a node's leaderships and replicas away (or stop doing so)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// usage is printed by -h and after a usage error.
const usage = `fdctl operates a frontdesk cluster.

Usage: fdctl [flags] <command> [arguments]

Commands:
  status                          nodes (gossip) and shards (leader, voters, placement, commit, lag)
  apply -f file.yaml              create or update merchants, their groups and agents
  get merchant <id> [--yaml]      a merchant's settings, groups and agents
  queue <merchant>                buyers waiting in each group's queue
  agents <merchant>               agents with status, load and limit
  leader transfer <shard> [node]  move a shard's leadership
  node drain <id> [--wait] [--cancel]
  token issue --secret-file F --role R [--merchant M[,M]|*] [--agent A] [--ttl D]
                                  move a node's leaderships and replicas away

Flags (before or after the command):
`

// globals are the flags every command takes.
type globals struct {
	addr    string
	token   string
	json    bool
	timeout time.Duration
}

// register adds the global flags to fs, bound to g.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "comma-separated API addresses of any nodes (env FDCTL_ADDR)")
	fs.StringVar(&g.token, "token", g.token, "bearer token, when the cluster runs with --auth-secret-file (env FDCTL_TOKEN)")
	fs.BoolVar(&g.json, "json", g.json, "print JSON instead of tables")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "give up after this long")
}

// errUsage is a command line mistake; run prints the usage after it.
var errUsage = errors.New("usage")

// cmd is one invocation: its flags, output and (made on demand) client.
type cmd struct {
	globals
	stdout, stderr io.Writer
	ctx            context.Context
	cl             *client.Client
}

// client connects to the cluster on first use.
func (c *cmd) client() (*client.Client, error) {
	if c.cl != nil {
		return c.cl, nil
	}
	var opts []client.Option
	if c.token != "" {
		opts = append(opts, client.WithToken(c.token))
	}
	cl, err := client.New(c.ctx, strings.Split(c.addr, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", c.addr, err)
	}
	c.cl = cl
	return cl, nil
}

// run is fdctl with args, writing to stdout and stderr; it returns the
// exit code: 0 done, 1 failed, 2 bad usage.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cmd{stdout: stdout, stderr: stderr}
	c.addr = getenv("FDCTL_ADDR")
	if c.addr == "" {
		c.addr = "127.0.0.1:7420"
	}
	c.token = getenv("FDCTL_TOKEN")
	c.timeout = 30 * time.Second
	fs := flag.NewFlagSet("fdctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.ctx = ctx
	defer func() {
		if c.cl != nil {
			c.cl.Close()
		}
	}()
	err := c.dispatch(rest)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "fdctl: %v\n\n", err)
		fs.Usage()
		return 2
	default:
		fmt.Fprintf(stderr, "fdctl: %v\n", err)
		return 1
	}
}

// dispatch runs the command named by args[0] (and args[1] for two-word
// commands).
func (c *cmd) dispatch(args []string) error {
	word := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch {
	case word(0) == "status":
		return c.status(args[1:])
	case word(0) == "apply":
		return c.apply(args[1:])
	case word(0) == "get" && word(1) == "merchant":
		return c.getMerchant(args[2:])
	case word(0) == "queue":
		return c.queue(args[1:])
	case word(0) == "agents":
		return c.agents(args[1:])
	case word(0) == "leader" && word(1) == "transfer":
		return c.leaderTransfer(args[2:])
	case word(0) == "node" && word(1) == "drain":
		return c.nodeDrain(args[2:])
	case word(0) == "token" && word(1) == "issue":
		return c.tokenIssue(args[2:])
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, strings.Join(args[:min(2, len(args))], " "))
}

// flags parses a command's own flags (plus the global ones) and checks the
// number of positional arguments.
func (c *cmd) flags(name string, args []string, minArgs, maxArgs int, define func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet("fdctl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.register(fs)
	if define != nil {
		define(fs)
	}
	// Flags may come after positional arguments too.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", errUsage, name, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < minArgs || len(pos) > maxArgs {
		return nil, fmt.Errorf("%w: %s takes %s", errUsage, name, argCount(minArgs, maxArgs))
	}
	return pos, nil
}

func argCount(lo, hi int) string {
	switch {
	case lo == hi && lo == 0:
		return "no arguments"
	case lo == hi:
		return fmt.Sprintf("%d argument(s)", lo)
	}
	return fmt.Sprintf("%d to %d arguments", lo, hi)
}
