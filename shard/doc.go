// Package shard runs this node's replicas of the shards: one Raft group per
// shard (hashicorp/raft, a raft-boltdb/v2 log per shard, file snapshots),
// all sharing the node's single Raft port through package transport.
//
// A [Host] owns the replicas of one node; [Host.Open] starts or reopens one
// ([Group]). A Group proposes commands to its shard's state machine
// ([Group.Propose]), makes local reads linearizable
// ([Group.LinearizableRead]), reports and moves leadership, and changes the
// shard's voters. While a replica leads its shard it proposes a pb.Tick
// every [HostConfig].TickInterval, so timeouts fire without client traffic.
// [ForMerchant] maps merchants to shards.
//
// # Errors
//
// Every error is wrapped so that errors.Is and errors.As work; the sentinels
// say what a caller may do next:
//
//	ErrNotLeader      nothing was applied; retry on the leader named by the
//	                  *NotLeaderError (errors.As), if it names one.
//	ErrNoLeader       nothing was applied; no leader is known right now
//	                  (also matched by a *NotLeaderError without a leader).
//	ErrIndeterminate  the entry may or may not commit. Retry with the SAME
//	                  request ids: the state machine de-duplicates them.
//	ErrShutdown       the replica is closed. Alone, nothing was applied;
//	                  together with ErrIndeterminate, the outcome is unknown.
//	context errors    the context ended before the proposal was submitted:
//	                  nothing was applied. (After submission a context that
//	                  ends gives ErrIndeterminate wrapping the context error.)
//
// # Concurrency
//
// All methods of Host and Group are safe for concurrent use. Reads of
// Group.FSM() may run at any time; they see the state between log entries.
package shard
