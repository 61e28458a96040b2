package validate

import (
	"fmt"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/frontdeskhq/frontdesk/e2e/model"
)

// Linearity is the linearizability check of one merchant's history.
type Linearity struct {
	Merchant string                `json:"merchant"`
	Ops      int                   `json:"ops"`
	Result   porcupine.CheckResult `json:"result"` // Ok, Illegal, or Unknown (timed out)
	Took     time.Duration         `json:"took_ns"`
	// Info is porcupine's account of the check, for its visualization;
	// kept only when the history is not linearizable.
	Info *porcupine.LinearizationInfo `json:"-"`
}

// Linearizable checks each merchant's history against model.Model, within
// timeout per merchant. Operations without an answer may take effect at
// any point after their call (porcupine: they never return).
func Linearizable(ms []*model.Merchant, h *model.History, timeout time.Duration) ([]Linearity, []Violation) {
	byMerchant := map[string][]model.Op{}
	for _, op := range h.Ops() {
		byMerchant[op.Input.Merchant] = append(byMerchant[op.Input.Merchant], op)
	}
	mod := model.Model(ms)
	var out []Linearity
	var bad []Violation
	for _, m := range ms {
		ops := model.Operations(byMerchant[m.ID])
		start := time.Now()
		res := porcupine.CheckOperationsTimeout(mod, ops, timeout)
		l := Linearity{Merchant: m.ID, Ops: len(ops), Result: res}
		if res == porcupine.Illegal {
			// Again, verbosely, for the visualization of what went wrong.
			res, info := porcupine.CheckOperationsVerbose(mod, ops, timeout)
			l.Result, l.Info = res, &info
		}
		l.Took = time.Since(start)
		switch l.Result {
		case porcupine.Illegal:
			bad = append(bad, Violation{Check: "linearizability", Merchant: m.ID,
				Detail: fmt.Sprintf("the history of %d operations is not linearizable", len(ops))})
		case porcupine.Unknown:
			bad = append(bad, Violation{Check: "linearizability", Merchant: m.ID,
				Detail: fmt.Sprintf("the check of %d operations did not finish within %v", len(ops), timeout)})
		}
		out = append(out, l)
	}
	return out, bad
}
