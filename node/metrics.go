package node

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// metrics are the node's Prometheus metrics, in a registry of its own (so
// several nodes in one test process do not collide).
type metrics struct {
	reg          *prometheus.Registry
	rpcs         *prometheus.CounterVec
	batchCalls   *prometheus.CounterVec
	rpcLatency   *prometheus.HistogramVec
	applyLatency *prometheus.HistogramVec
}

func shardLabel(s uint32) string { return strconv.FormatUint(uint64(s), 10) }

// latencyBuckets (seconds) bound the latency histograms. They include
// the product's targets — 25 ms (W1's p99) and 1 s (failover) — as
// boundaries, so histogram_quantile and "share of calls under 25 ms" read
// them without interpolating across a bucket (powers of two, before, put
// 16 and 32 ms around the p99 target).
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

func newMetrics(n *Node) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.rpcs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "frontdesk_rpc_requests_total", Help: "RPCs served, by procedure and Connect code.",
	}, []string{"procedure", "code"})
	m.batchCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "frontdesk_batch_calls_total",
		Help: "Calls carried by DispatchService.Batch RPCs (each counted once in frontdesk_rpc_requests_total), by the procedure each stands for and its Connect code.",
	}, []string{"procedure", "code"})
	m.rpcLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "frontdesk_rpc_duration_seconds", Help: "RPC latency by procedure.",
		Buckets: latencyBuckets,
	}, []string{"procedure"})
	m.applyLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "frontdesk_shard_apply_seconds", Help: "Time from proposing a command to its result, by shard.",
		Buckets: latencyBuckets,
	}, []string{"shard"})
	m.reg.MustRegister(m.rpcs, m.batchCalls, m.rpcLatency, m.applyLatency, &shardCollector{n: n},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// interceptor counts unary RPCs and their latency (streams are counted when they end).
func (m *metrics) interceptor() connect.Interceptor { return &rpcInterceptor{m: m} }

type rpcInterceptor struct{ m *metrics }

func (i *rpcInterceptor) observe(procedure string, start time.Time, err error) {
	var code connect.Code
	if err != nil {
		code = connect.CodeOf(err)
	}
	i.m.rpcs.WithLabelValues(procedure, codeLabel(code)).Inc()
	i.m.rpcLatency.WithLabelValues(procedure).Observe(time.Since(start).Seconds())
}

// observeBatchCall is the dispatch.BatchObserver: it counts one batched
// call. A call with nothing set counts under the Batch procedure itself.
func (m *metrics) observeBatchCall(procedure string, code connect.Code) {
	if procedure == "" {
		procedure = frontdeskv1connect.DispatchServiceBatchProcedure
	}
	m.batchCalls.WithLabelValues(procedure, codeLabel(code)).Inc()
}

// codeLabel is the code label of the RPC metrics: "ok", or the Connect
// code's name.
func codeLabel(c connect.Code) string {
	if c == 0 {
		return "ok"
	}
	return c.String()
}

func (i *rpcInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		i.observe(req.Spec().Procedure, start, err)
		return res, err
	}
}

func (i *rpcInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *rpcInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		i.observe(conn.Spec().Procedure, start, err)
		return err
	}
}

// shardCollector reads each local replica's Raft state and state machine
// at scrape time.
type shardCollector struct{ n *Node }

var (
	descRaftState = prometheus.NewDesc("frontdesk_shard_raft_state", "1 for this replica's Raft state.", []string{"shard", "state"}, nil)
	descTerm      = prometheus.NewDesc("frontdesk_shard_term", "Raft term.", []string{"shard"}, nil)
	descCommit    = prometheus.NewDesc("frontdesk_shard_commit_index", "Raft commit index.", []string{"shard"}, nil)
	descApplied   = prometheus.NewDesc("frontdesk_shard_applied_index", "Raft applied index.", []string{"shard"}, nil)
	descSessions  = prometheus.NewDesc("frontdesk_sessions", "Active sessions by state.", []string{"shard", "state"}, nil)
	descQueue     = prometheus.NewDesc("frontdesk_queue_length", "Buyers waiting in queues.", []string{"shard"}, nil)
	descEntries   = prometheus.NewDesc("frontdesk_shard_proposed_entries_total",
		"Raft entries this replica proposed while it led (each a batch of commands), since it opened.", []string{"shard"}, nil)
	descCommands = prometheus.NewDesc("frontdesk_shard_proposed_commands_total",
		"Commands in the entries this replica proposed while it led, since it opened; commands/entries is the mean batch.", []string{"shard"}, nil)
	// With --shared-log: the node-wide log store's group commits.
	descLogCommits = prometheus.NewDesc("frontdesk_sharedlog_commits_total", "Transactions (each one fsync) the shared log store committed.", nil, nil)
	descLogWrites  = prometheus.NewDesc("frontdesk_sharedlog_writes_total", "Writes (appends, stable-store sets, delete chunks) the shared log store's commits carried.", nil, nil)
	descLogEntries = prometheus.NewDesc("frontdesk_sharedlog_entries_total", "Raft log entries the shared log store's commits carried.", nil, nil)
	descLogShards  = prometheus.NewDesc("frontdesk_sharedlog_commit_shards_total", "Sum over commits of the distinct shards each wrote; divided by commits, shards per commit.", nil, nil)
	descLogFails   = prometheus.NewDesc("frontdesk_sharedlog_failed_commits_total", "Commits of the shared log store that failed (after a failed fsync every write fails).", nil, nil)
	// Peer watching and the elections it starts (shard/fastelect.go).
	descPeersDown = prometheus.NewDesc("frontdesk_raft_peers_down_total",
		"Times a watched peer's Raft port was found gone (its watch connection ended and a redial failed).", nil, nil)
	descFastElections = prometheus.NewDesc("frontdesk_shard_fast_elections_total",
		"Elections the open replicas started at once because their leader's node was found gone.", nil, nil)
	// Coalesced heartbeats (shard/transport/beats.go).
	descBeatCalls = prometheus.NewDesc("frontdesk_raft_heartbeats_coalesced_total",
		"Heartbeats this node's leaders sent coalesced with other shards' to the same node.", nil, nil)
	descBeatBatches = prometheus.NewDesc("frontdesk_raft_heartbeat_batches_total",
		"Writes that carried coalesced heartbeats (heartbeats per write: the ratio of the two).", nil, nil)
	descBeatTimeouts = prometheus.NewDesc("frontdesk_raft_heartbeat_timeouts_total",
		"Coalesced heartbeats not answered within the transport timeout.", nil, nil)
	descStaleConns = prometheus.NewDesc("frontdesk_raft_stale_conns_total",
		"Raft RPCs sent again because their pooled connection had been closed by the peer (typically after the peer restarted).", nil, nil)
	descRefusedRedials = prometheus.NewDesc("frontdesk_raft_refused_redials_total",
		"Redials of a raft append held while its follower's port refused connections (the follower down or restarting).", nil, nil)
	// Quiet shards (shard/transport/quiet.go).
	descQuietBeats = prometheus.NewDesc("frontdesk_raft_quiet_heartbeats_total",
		"Heartbeats this node's leaders answered themselves on the follower node's promise instead of sending them.", nil, nil)
	descQuietAppends = prometheus.NewDesc("frontdesk_raft_quiet_appends_total",
		"Idle appends (no entries, repeating one acknowledged) this node's leaders answered themselves on the follower node's promise.", nil, nil)
	descQuietLeaves = prometheus.NewDesc("frontdesk_raft_quiet_leaves_total",
		"Promises to follow a leader that replicas here withdrew before moving to a newer term.", nil, nil)
	descQuietWaits = prometheus.NewDesc("frontdesk_raft_quiet_waits_total",
		"Of those, withdrawals that had to wait for the leader's acknowledgement or for the promise to lapse.", nil, nil)
	descPeersRetired = prometheus.NewDesc("frontdesk_raft_peer_senders_retired_total",
		"Senders of coalesced heartbeats to a peer address stopped after a minute unused (a node that left or moved).", nil, nil)
)

func (c *shardCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descTerm, descCommit, descApplied, descSessions, descQueue, descEntries, descCommands,
		descLogCommits, descLogWrites, descLogEntries, descLogShards, descLogFails, descPeersDown, descFastElections,
		descBeatCalls, descBeatBatches, descBeatTimeouts, descStaleConns, descRefusedRedials,
		descQuietBeats, descQuietAppends, descQuietLeaves, descQuietWaits, descPeersRetired} {
		ch <- d
	}
}

func (c *shardCollector) Collect(ch chan<- prometheus.Metric) {
	ms := c.n.mux.Stats()
	for d, v := range map[*prometheus.Desc]uint64{descPeersDown: ms.PeersDown, descBeatCalls: ms.BeatCalls,
		descBeatBatches: ms.BeatBatches, descBeatTimeouts: ms.BeatTimeouts, descStaleConns: ms.StaleConns,
		descRefusedRedials: ms.RefusedRedials, descQuietBeats: ms.QuietHeartbeats, descQuietAppends: ms.QuietAppends,
		descQuietLeaves: ms.QuietLeaves, descQuietWaits: ms.QuietWaits, descPeersRetired: ms.PeersRetired} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	ch <- prometheus.MustNewConstMetric(descFastElections, prometheus.CounterValue, float64(c.n.host.FastElections()))
	if st, ok := c.n.host.SharedLogStats(); ok {
		for d, v := range map[*prometheus.Desc]uint64{descLogCommits: st.Commits, descLogWrites: st.Writes,
			descLogEntries: st.Entries, descLogShards: st.Shards, descLogFails: st.Failures} {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
		}
	}
	for _, g := range c.n.host.Groups() {
		s := shardLabel(g.Shard())
		info := g.Info()
		ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, 1, s, info.State)
		ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(info.Term), s)
		ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(info.CommitIndex), s)
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(info.AppliedIndex), s)
		var bot, queued, assigned uint64
		f := g.FSM()
		for _, id := range f.Merchants() {
			if st, err := f.Stats(id); err == nil {
				bot, queued, assigned = bot+st.InBot, queued+st.Queued, assigned+st.Assigned
			}
		}
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(bot), s, "BOT")
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(queued), s, "QUEUED")
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(assigned), s, "ASSIGNED")
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(queued), s)
		bs := g.BatchStats()
		ch <- prometheus.MustNewConstMetric(descEntries, prometheus.CounterValue, float64(bs.Entries), s)
		ch <- prometheus.MustNewConstMetric(descCommands, prometheus.CounterValue, float64(bs.Commands), s)
	}
}
