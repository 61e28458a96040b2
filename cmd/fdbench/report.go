package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// result is one measured run, printed as a table or (--json) as one
// object.
type result struct {
	Mode        string `json:"mode"`     // w1 or ceiling
	Workload    string `json:"workload"` // W1 or W1-surge
	Concurrency int    `json:"concurrency"`
	// Clients is how many client.Client instances shared the load (w1).
	Clients int `json:"clients,omitempty"`
	// Batch is client.WithBatching's maxCalls (w1); 0 when batching is off.
	Batch     int     `json:"batch,omitempty"`
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s"`
	// Shards is the cluster's shard count (w1) or the number of raft
	// groups (ceiling).
	Shards    int     `json:"shards"`
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p999_ms"`
	MaxMs     float64 `json:"max_ms"`
	Errors    int64   `json:"errors"`
	LastError string  `json:"last_error,omitempty"`
	Retries   int64   `json:"retries"`
	// Outcomes of the consults, and how many sessions were ended.
	Outcomes struct {
		Assigned int64 `json:"assigned"`
		Queued   int64 `json:"queued"`
		Busy     int64 `json:"busy"`
		Other    int64 `json:"other"`
		Ended    int64 `json:"ended"`
	} `json:"outcomes"`
	// LeaderChanges is how many times a shard's term grew during the
	// window, summed over shards (an election each); absent when unknown.
	LeaderChanges *int64 `json:"leader_changes,omitempty"`
	// RaftEntries is how many log entries the shards appended (inproc)
	// or committed (w1, from the nodes' shard maps) in the window, ticks
	// and barriers included, and OpsPerEntry the ops per entry.
	RaftEntries int64   `json:"raft_entries,omitempty"`
	OpsPerEntry float64 `json:"ops_per_entry,omitempty"`
	// Nodes are the frontdeskd processes (w1 --local), or this process
	// holding the in-process raft nodes (ceiling).
	Nodes []procUsage `json:"nodes"`
	// Bench is this process (the load generator); BenchGCPercent its GC
	// target during the run when --gc-percent set one.
	Bench          procUsage `json:"bench"`
	BenchGCPercent int       `json:"bench_gc_percent,omitempty"`
	LoadAvg        struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"loadavg"`
}

// newResult fills a result from a run.
func newResult(mode string, o runOpts, shards int, m measured) result {
	r := result{Mode: mode, Workload: "W1", Concurrency: o.conc, DurationS: m.elapsed.Seconds(),
		WarmupS: o.warmup.Seconds(), Shards: shards, BenchGCPercent: max(o.gcPercent, 0)}
	if o.surge {
		r.Workload = "W1-surge"
	}
	ta := m.tally
	r.Ops = ta.ops.Load()
	if m.elapsed > 0 {
		r.OpsPerSec = float64(r.Ops) / m.elapsed.Seconds()
	}
	r.P50Ms, r.P90Ms = ms(ta.lat.percentile(0.5)), ms(ta.lat.percentile(0.9))
	r.P99Ms, r.P999Ms = ms(ta.lat.percentile(0.99)), ms(ta.lat.percentile(0.999))
	r.MaxMs = ms(ta.lat.maxLatency())
	r.Errors, r.Retries = ta.errs.Load(), m.retries
	if e := ta.lastErr.Load(); e != nil {
		r.LastError = (*e).Error()
	}
	r.Outcomes.Assigned, r.Outcomes.Queued, r.Outcomes.Busy = ta.assigned.Load(), ta.queued.Load(), ta.busy.Load()
	r.Outcomes.Other, r.Outcomes.Ended = ta.other.Load(), ta.ended.Load()
	return r
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable prints results side by side, one column each.
func printTable(w io.Writer, rs ...result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, f func(r result) string) {
		fmt.Fprint(tw, name, "\t")
		for _, r := range rs {
			fmt.Fprint(tw, f(r), "\t")
		}
		fmt.Fprintln(tw)
	}
	row("", func(r result) string { return r.Mode })
	row("workload", func(r result) string { return r.Workload })
	row("concurrency", func(r result) string { return fmt.Sprint(r.Concurrency) })
	row("clients", func(r result) string { return fmt.Sprint(max(r.Clients, 1)) })
	row("batch", func(r result) string { return fmt.Sprint(r.Batch) })
	row("shards/groups", func(r result) string { return fmt.Sprint(r.Shards) })
	row("duration s", func(r result) string { return fmt.Sprintf("%.1f", r.DurationS) })
	row("ops", func(r result) string { return fmt.Sprint(r.Ops) })
	row("ops/s", func(r result) string { return fmt.Sprintf("%.0f", r.OpsPerSec) })
	row("p50 ms", func(r result) string { return fmt.Sprintf("%.2f", r.P50Ms) })
	row("p90 ms", func(r result) string { return fmt.Sprintf("%.2f", r.P90Ms) })
	row("p99 ms", func(r result) string { return fmt.Sprintf("%.2f", r.P99Ms) })
	row("p99.9 ms", func(r result) string { return fmt.Sprintf("%.2f", r.P999Ms) })
	row("max ms", func(r result) string { return fmt.Sprintf("%.2f", r.MaxMs) })
	row("errors", func(r result) string { return fmt.Sprint(r.Errors) })
	row("retries", func(r result) string { return fmt.Sprint(r.Retries) })
	row("assigned/queued/busy", func(r result) string {
		return fmt.Sprintf("%d/%d/%d", r.Outcomes.Assigned, r.Outcomes.Queued, r.Outcomes.Busy)
	})
	row("raft entries (ops/entry)", func(r result) string {
		if r.RaftEntries == 0 {
			return "-"
		}
		return fmt.Sprintf("%d (%.1f)", r.RaftEntries, r.OpsPerEntry)
	})
	row("leader changes", func(r result) string {
		if r.LeaderChanges == nil {
			return "-"
		}
		return fmt.Sprint(*r.LeaderChanges)
	})
	n := 0
	for _, r := range rs {
		n = max(n, len(r.Nodes))
	}
	for i := range n {
		row(fmt.Sprintf("node %d cpu cores / rss MiB", i+1), func(r result) string {
			if i >= len(r.Nodes) {
				return "-"
			}
			return fmt.Sprintf("%.2f / %.0f", r.Nodes[i].CPUCores, r.Nodes[i].RSSMiB)
		})
	}
	row("bench cpu cores / rss MiB", func(r result) string {
		return fmt.Sprintf("%.2f / %.0f", r.Bench.CPUCores, r.Bench.RSSMiB)
	})
	row("loadavg start", func(r result) string { return r.LoadAvg.Start })
	row("loadavg end", func(r result) string { return r.LoadAvg.End })
	tw.Flush()
	for _, r := range rs {
		if r.LastError != "" {
			fmt.Fprintf(w, "%s: last error: %s\n", r.Mode, r.LastError)
		}
	}
}
