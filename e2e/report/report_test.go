package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/e2e/model"
	"github.com/frontdeskhq/frontdesk/e2e/validate"
)

// TestWriteFailedRun: a run whose history is not linearizable leaves its
// history, porcupine's visualization and a summary that says so.
func TestWriteFailedRun(t *testing.T) {
	ms := []*model.Merchant{{ID: "m", DefaultGroup: "pre", Groups: []model.Group{{ID: "pre"}},
		Agents: []model.Agent{{ID: "a1", Groups: []string{"pre"}, Limit: 1, Status: "ONLINE"}}}}
	assigned := func(b, s string) model.Output {
		return model.Output{Outcome: "ASSIGNED", State: "ASSIGNED", Session: s, Buyer: b, Agent: "a1", Group: "pre"}
	}
	h := model.FromOps([]model.Op{
		{Input: model.Input{Kind: model.Consult, Merchant: "m", Buyer: "b1"}, Output: assigned("b1", "s1"), Call: 0, Return: 5},
		{Client: 1, Input: model.Input{Kind: model.Consult, Merchant: "m", Buyer: "b2"}, Output: assigned("b2", "s2"), Call: 10, Return: 15},
	})
	r := &Run{Name: "test", Driver: "none", Ops: h.Len()}
	r.Linear, r.Violations = validate.Linearizable(ms, h, 10*time.Second)
	t.Setenv("FRONTDESK_E2E_RESULTS", t.TempDir())
	dir, err := Dir(r.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, r, h, ms, nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"summary.txt", "run.json", "history.json", "linearizability-m.html"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v; want a non-empty file", f, err)
		}
	}
	if s := r.Summary(); !strings.Contains(s, "linearizable: false") || !strings.Contains(s, "violations: 1") {
		t.Errorf("summary:\n%s\nwant it to say the run is not linearizable, with one violation", s)
	}
}
