package main

import (
	"flag"
	"fmt"
	"strconv"
	"time"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// leaderTransfer moves a shard's leadership to a node, or to any
// up-to-date voter. (Placement hands the lead to its preferred leader again
// some seconds later unless that is the node chosen: see node/DESIGN.md.)
func (c *cmd) leaderTransfer(args []string) error {
	pos, err := c.flags("leader transfer", args, 1, 2, nil)
	if err != nil {
		return err
	}
	s, err := strconv.ParseUint(pos[0], 10, 32)
	if err != nil {
		return fmt.Errorf("%w: leader transfer: shard %q is not a number", errUsage, pos[0])
	}
	to := ""
	if len(pos) == 2 {
		to = pos[1]
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	leader, err := cl.TransferLeadership(c.ctx, uint32(s), to)
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.stdout, map[string]any{"shard": s, "leader": leader})
	}
	fmt.Fprintf(c.stdout, "shard %d: leader is now %s\n", s, leader)
	return nil
}

// nodeDrain starts (or with --cancel ends) a node's drain; with --wait it
// follows the drain until the node leads and holds nothing.
func (c *cmd) nodeDrain(args []string) error {
	var wait, cancel bool
	pos, err := c.flags("node drain", args, 1, 1, func(fs *flag.FlagSet) {
		fs.BoolVar(&wait, "wait", false, "wait until the node leads and holds nothing (bounded by --timeout)")
		fs.BoolVar(&cancel, "cancel", false, "end the drain: placement gives the node replicas again")
	})
	if err != nil {
		return err
	}
	id := pos[0]
	cl, err := c.client()
	if err != nil {
		return err
	}
	for {
		res, err := cl.DrainNode(c.ctx, id, cancel)
		if err != nil {
			return err
		}
		if !wait || cancel || res.Drained {
			return c.printDrain(res)
		}
		if !c.json {
			fmt.Fprintf(c.stderr, "%s: draining; leads %d shards, holds %d replicas\n", id, res.Leaders, res.Replicas)
		}
		select {
		case <-c.ctx.Done():
			return fmt.Errorf("%s not drained yet: %w", id, c.ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

func (c *cmd) printDrain(res *pb.DrainNodeResponse) error {
	if c.json {
		return writeJSON(c.stdout, protoJSON(res))
	}
	switch {
	case !res.Draining:
		fmt.Fprintf(c.stdout, "%s: not draining; placement gives it replicas again\n", res.NodeId)
	case res.Drained:
		fmt.Fprintf(c.stdout, "%s: drained; it leads and holds nothing and can be stopped\n", res.NodeId)
	default:
		fmt.Fprintf(c.stdout, "%s: draining; leads %d shards, holds %d replicas (follow with --wait)\n", res.NodeId, res.Leaders, res.Replicas)
	}
	return nil
}
