// Package report writes what a chaos run leaves behind for people: the
// history as JSON, porcupine's visualization of each merchant whose
// history is not linearizable, the final state, the faults and checks, and
// every node's log, in one results folder.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/frontdeskhq/frontdesk/e2e/cluster"
	"github.com/frontdeskhq/frontdesk/e2e/failpoint"
	"github.com/frontdeskhq/frontdesk/e2e/model"
	"github.com/frontdeskhq/frontdesk/e2e/validate"
)

// Run is everything a chaos run found.
type Run struct {
	Name     string        `json:"name"`
	Driver   string        `json:"driver"`
	Duration time.Duration `json:"duration_ns"`
	Ops      int           `json:"ops"`
	// Indeterminate: writes whose answer never came.
	Indeterminate int                    `json:"indeterminate"`
	Faults        []*failpoint.Injection `json:"faults"`
	Skipped       []string               `json:"skipped,omitempty"` // faults the driver cannot inject, and why
	Windows       []validate.Window      `json:"windows"`
	Linear        []validate.Linearity   `json:"linearizability"`
	Replicas      []validate.ShardDigest `json:"replicas"`
	Violations    []validate.Violation   `json:"violations"`
	Final         *validate.Final        `json:"-"`
}

// Linearizable reports whether every merchant's check passed.
func (r *Run) Linearizable() bool {
	for _, l := range r.Linear {
		if l.Result != porcupine.Ok {
			return false
		}
	}
	return len(r.Linear) > 0
}

// FaultsByKind counts the faults injected, by kind.
func (r *Run) FaultsByKind() map[string]int {
	out := map[string]int{}
	for _, f := range r.Faults {
		out[f.Kind]++
	}
	return out
}

// Summary is the run in a few lines.
func (r *Run) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos %s on %s: %v\n", r.Name, r.Driver, r.Duration.Round(time.Second))
	fmt.Fprintf(&b, "  faults: %v", r.FaultsByKind())
	if len(r.Skipped) > 0 {
		fmt.Fprintf(&b, " (skipped: %s)", strings.Join(r.Skipped, "; "))
	}
	fmt.Fprintf(&b, "\n  ops recorded: %d (indeterminate: %d)\n", r.Ops, r.Indeterminate)
	fmt.Fprintf(&b, "  violations: %d\n", len(r.Violations))
	for i, v := range r.Violations {
		if i == 20 {
			fmt.Fprintf(&b, "    ... %d more\n", len(r.Violations)-i)
			break
		}
		fmt.Fprintf(&b, "    %s\n", v)
	}
	var checked int
	var took time.Duration
	for _, l := range r.Linear {
		checked += l.Ops
		took += l.Took
	}
	fmt.Fprintf(&b, "  linearizable: %v (%d merchants, %d ops, checked in %v)\n", r.Linearizable(), len(r.Linear), checked, took.Round(time.Millisecond))
	agree := 0
	for _, d := range r.Replicas {
		if d.Agree {
			agree++
		}
	}
	fmt.Fprintf(&b, "  replicas identical at the same index: %d of %d shards\n", agree, len(r.Replicas))
	for _, d := range r.Replicas {
		for _, k := range sortedKeys(d.Diffs) {
			fmt.Fprintf(&b, "    shard %d, %s:\n", d.Shard, k)
			for _, line := range d.Diffs[k] {
				fmt.Fprintf(&b, "      %s\n", strings.ReplaceAll(line, "\n", "\n      "))
			}
		}
	}
	fmt.Fprintf(&b, "  failover (fault → first write answered on its shard):\n")
	fmt.Fprintf(&b, "    leader kills: %v\n", validate.Summarize(r.Windows, "kill-leader"))
	for _, k := range []string{"pause-leader", "partition-leader", "restart-all", "wipe-node", "kill-follower"} {
		if s := validate.Summarize(r.Windows, k); s.N+s.Missing > 0 {
			fmt.Fprintf(&b, "    %s: %v\n", k, s)
		}
	}
	fmt.Fprintf(&b, "    all faults: %v\n", validate.Summarize(r.Windows))
	return b.String()
}

// Dir makes a results folder for a run: under $FRONTDESK_E2E_RESULTS if
// set, else the system's temporary directory.
func Dir(name string) (string, error) {
	root := os.Getenv("FRONTDESK_E2E_RESULTS")
	if root == "" {
		root = os.TempDir()
	}
	dir := filepath.Join(root, fmt.Sprintf("frontdesk-chaos-%s-%s", name, time.Now().Format("20060102-150405")))
	return dir, os.MkdirAll(dir, 0o755)
}

// Write puts the run into dir: summary.txt, run.json, history.json,
// final.json, linearizability-<merchant>.html for each merchant whose
// history is not linearizable, shard<N>-<node>.snapshot with the state of
// each replica of a shard whose replicas disagree, and <node>.log for each
// node.
func Write(dir string, r *Run, h *model.History, ms []*model.Merchant, d cluster.Driver) error {
	var errs []string
	try := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	try(os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(r.Summary()), 0o644))
	try(writeJSON(filepath.Join(dir, "run.json"), r))
	try(writeJSON(filepath.Join(dir, "final.json"), r.Final))
	try(writeJSON(filepath.Join(dir, "merchants.json"), ms))
	if f, err := os.Create(filepath.Join(dir, "history.json")); err != nil {
		try(err)
	} else {
		try(h.WriteJSON(f))
		try(f.Close())
	}
	mod := model.Model(ms)
	for _, l := range r.Linear {
		if l.Info != nil {
			try(porcupine.VisualizePath(mod, *l.Info, filepath.Join(dir, "linearizability-"+l.Merchant+".html")))
		}
	}
	for _, sd := range r.Replicas {
		for _, addr := range sortedKeys(sd.States) {
			name := fmt.Sprintf("shard%d-%s.snapshot", sd.Shard, strings.NewReplacer(":", "_", "/", "_").Replace(addr))
			try(os.WriteFile(filepath.Join(dir, name), sd.States[addr], 0o644))
		}
	}
	if d != nil {
		for i := 0; i < d.Size(); i++ {
			b, err := d.Log(i)
			try(err)
			try(os.WriteFile(filepath.Join(dir, d.NodeID(i)+".log"), b, 0o644))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("report: %s", strings.Join(errs, "; "))
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
