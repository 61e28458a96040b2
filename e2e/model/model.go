package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Model returns the sequential specification of the merchants' dispatch,
// for porcupine, partitioned per merchant (merchants share nothing, so a
// history is linearizable iff each merchant's is).
//
// Per merchant the state is: each agent's status, limit and load; each
// active session (buyer, state, agent, group, the agent it excludes); each
// group's queue in order. The model does not choose where a buyer goes —
// scoring is the server's business — it checks that the answer is allowed:
// an assignment only to an online member below its limit (so a limit is
// never exceeded), a queue only when no member could take the buyer (push
// groups) and the queue has room, BUSY only when neither, one active
// session per buyer, transfers, ends and pull-next as the state allows.
// What the answers do not show it derives exactly: a freed agent takes
// the head of its push group's queue (fsm's drainAgent), and a queued
// buyer's place is the position its answer reported (queue keys, with
// their priority and aging, stay the server's). The traffic therefore
// keeps to what this can follow: each agent in at most one push group, no
// idle timeout, no maximum wait, no surge levels, no re-queueing on
// offline.
//
// An Op with an unknown answer (Return == Never) may take effect at any
// point after its call, or never: the model tries every answer it could
// have had and "no effect".
func Model(merchants []*Merchant) porcupine.Model {
	byID := make(map[string]*Merchant, len(merchants))
	for _, m := range merchants {
		byID[m.ID] = m
	}
	nm := porcupine.NondeterministicModel{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			var keys []string
			parts := map[string][]porcupine.Operation{}
			for _, op := range history {
				k := op.Input.(Input).Merchant
				if _, ok := parts[k]; !ok {
					keys = append(keys, k)
				}
				parts[k] = append(parts[k], op)
			}
			slices.Sort(keys)
			out := make([][]porcupine.Operation, len(keys))
			for i, k := range keys {
				out[i] = parts[k]
			}
			return out
		},
		Init: func() []any { return []any{(*state)(nil)} },
		Step: func(st, input, output any) []any {
			in, out := input.(Input), output.(Output)
			s := st.(*state)
			if s == nil {
				m := byID[in.Merchant]
				if m == nil {
					return nil
				}
				s = initial(m)
			}
			if !out.Unknown {
				if ok, n := step(s, in, out); ok {
					return []any{n}
				}
				return nil
			}
			next := []any{s} // no effect: not applied, an error, or a no-op
			for _, o := range candidates(s, in) {
				if ok, n := step(s, in, o); ok {
					next = append(next, n)
				}
			}
			return next
		},
		Equal: func(a, b any) bool {
			x, y := a.(*state), b.(*state)
			if x == nil || y == nil {
				return x == y
			}
			return x.equal(y)
		},
		Hash: func(a any) uint64 {
			if s := a.(*state); s != nil {
				return s.hash()
			}
			return 0
		},
		DescribeOperation: func(input, output any) string { return Describe(input.(Input), output.(Output)) },
		DescribeState: func(a any) string {
			if s := a.(*state); s != nil {
				return s.String()
			}
			return "(initial)"
		},
	}
	return nm.ToModel()
}

// Operations converts a history to porcupine's operations. Reads without an
// answer change nothing and are left out.
func Operations(ops []Op) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		if op.Output.Unknown && op.Input.Kind.Read() {
			continue
		}
		ret := op.Return
		if op.Output.Unknown {
			ret = Never
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: op.Input, Output: op.Output,
			Call: op.Call, Return: ret, Metadata: op.ID})
	}
	return out
}

// Describe renders an Op for people: "consult b07 → ASSIGNED 3-120-0 @a2".
func Describe(in Input, out Output) string {
	var b strings.Builder
	b.WriteString(string(in.Kind))
	for _, f := range []string{in.Buyer, in.Session, in.Agent, in.Group, in.Reason, in.Status} {
		if f != "" {
			b.WriteString(" " + f)
		}
	}
	if in.Kind == SetLimit {
		fmt.Fprintf(&b, " %d", in.Limit)
	}
	b.WriteString(" → ")
	switch {
	case out.Unknown:
		b.WriteString("?")
	case out.Err != "":
		b.WriteString(out.Err)
	case in.Kind == ListAgents:
		for _, a := range out.Agents {
			fmt.Fprintf(&b, "%s:%d/%d ", a.ID, a.Load, a.Limit)
		}
	default:
		b.WriteString(out.Outcome)
		for _, f := range []string{out.Session, out.State} {
			if f != "" {
				b.WriteString(" " + f)
			}
		}
		if out.Agent != "" {
			b.WriteString(" @" + out.Agent)
		}
		if out.Position > 0 {
			fmt.Fprintf(&b, " #%d", out.Position)
		}
	}
	return b.String()
}
