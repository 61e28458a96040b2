// Package client is the Go client of a frontdesk cluster.
//
// A Client is given the API addresses of any cluster members. It asks one of
// them for the shard map (ClusterService.GetShardMap), learns the shard count,
// each shard's leader and replicas and every node's API address, and then
// sends each merchant call to the leader of the merchant's shard
// (ForMerchant: FNV-1a 32 of the merchant id, modulo the shard count; the
// same function the server uses).
//
// # Retries
//
// A call is retried, until its context ends, when the cluster cannot serve it
// right now: UNAVAILABLE from a node (not the leader, no leader yet, shutting
// down, outcome unknown) and transport failures (connection refused or reset,
// a node killed mid-call, the per-attempt timeout of WithCallTimeout). An
// UNAVAILABLE that names the leader (a frontdesk.v1.LeaderHint detail) is
// retried at once at that leader, and the leader cache is updated; any other
// failure marks the cache stale, backs off (exponential with jitter, see
// WithRetry) and refreshes the shard map from the known nodes, in rotation.
// Errors about the request itself (INVALID_ARGUMENT, NOT_FOUND,
// FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED and every other
// code the server sends) are returned at once as an *Error.
//
// Retrying a write is safe because every mutating call carries a request id,
// the same one on every attempt: the shard applies a request id once and
// answers a repeat with the first result. The id is 128 random bits (hex)
// unless the caller chose one with WithRequestID. When the context ends after
// an attempt whose outcome is unknown, the call fails with a *RetryError that
// matches ErrIndeterminate: the write may or may not have been applied, and
// repeating it with WithRequestID(ctx, e.RequestID) finds out safely.
//
// # Batching
//
// Write calls issued concurrently to the same node travel together in
// DispatchService.Batch RPCs, which under load cuts the CPU each call costs
// on both sides. It changes nothing else: the server answers each call of a
// batch exactly as it would alone, and the client applies the rules above to
// each call separately (its own context, request id, retries and redirects).
// On by default (DefaultBatchCalls); WithBatching sets the size, and
// WithBatching(0) sends every call as its own RPC.
//
// # Reads
//
// Reads go to the shard leader and are linearizable. A read with the Stale
// option may be answered by any replica from its local state; after a failed
// attempt the client tries the shard's other replicas, so stale reads keep
// working while a shard elects a new leader.
//
// # Events
//
// Watch streams a merchant's events and survives failover: when a stream
// breaks it reconnects to any replica of the shard (events are replicated
// state, numbered the same on every replica) and resumes after the last seq
// it delivered, or after the seq the node said it had scanned past if that
// is later (Watcher.ResumeSeq), dropping anything it has already delivered.
//
// # Transport
//
// By default the client speaks the Connect protocol over HTTP/2 without TLS
// (h2c, prior knowledge), which the frontdesk API port serves next to
// HTTP/1.1: one multiplexed connection per node carries every concurrent call
// and event stream, the gRPC protocol (WithProtocol) works over it, and
// HTTP/2 pings detect a node that stopped answering so streams move on.
// WithTLS switches to https (HTTP/2 by ALPN, HTTP/1.1 fallback);
// WithHTTPClient replaces the transport entirely.
//
// A Client is safe for concurrent use by many goroutines; a Watcher is used
// by one goroutine (Close may be called from any).
package client
