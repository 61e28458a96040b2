package validate

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/frontdeskhq/frontdesk/e2e/model"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// MaxEnded is how many ended sessions a shard keeps for queries (fsm's
// default): beyond it the oldest are dropped, so an acknowledged session
// that ended may be unreadable without being lost.
const MaxEnded = 10_000

// Acknowledged checks that every acknowledged result is reflected in the
// final state: each session an answer named still exists (active, or ended
// and readable) and each acknowledged end left its session ended; and that
// the shard counted each acknowledged consult, escalation, end and
// transfer exactly once — no more (a retry applied twice) and no fewer (a
// write lost) — allowing for the writes whose answer never came.
func Acknowledged(f *Final, h *model.History) []Violation {
	var out []Violation
	ops := h.Ops()
	endedOnShard := map[uint32]uint64{}
	for _, m := range f.Merchants {
		for _, n := range m.Stats.GetStats().GetEndedByReason() {
			endedOnShard[m.Shard] += n
		}
	}
	type count struct{ acked, unknown uint64 }
	counts := map[string]map[string]*count{} // merchant → counter → counts
	bump := func(m, counter string, unknown bool) {
		if counts[m] == nil {
			counts[m] = map[string]*count{}
		}
		c := counts[m][counter]
		if c == nil {
			c = &count{}
			counts[m][counter] = c
		}
		if unknown {
			c.unknown++
		} else {
			c.acked++
		}
	}
	for _, op := range ops {
		in, o := op.Input, op.Output
		fm := f.Merchants[in.Merchant]
		if fm == nil || op.Client == finalClient {
			continue
		}
		if o.Unknown {
			switch in.Kind {
			case model.Consult, model.Escalate:
				bump(in.Merchant, string(in.Kind), true)
			case model.Transfer:
				bump(in.Merchant, "TRANSFERRED", true)
			case model.End:
				bump(in.Merchant, in.Reason, true)
			}
			continue
		}
		if o.Err != "" || in.Kind.Read() {
			continue
		}
		switch {
		case in.Kind == model.Consult && o.Outcome != "EXISTING":
			bump(in.Merchant, "consult", false)
		case in.Kind == model.Escalate && (o.Outcome == "ASSIGNED" || o.Outcome == "QUEUED"):
			bump(in.Merchant, "escalate", false)
		case in.Kind == model.Transfer && (o.Outcome == "ASSIGNED" || o.Outcome == "QUEUED"):
			bump(in.Merchant, "TRANSFERRED", false)
		case in.Kind == model.End:
			bump(in.Merchant, in.Reason, false)
		}
		if o.Session == "" {
			continue
		}
		s := fm.Sessions[o.Session]
		switch {
		case s == nil && endedOnShard[fm.Shard] <= MaxEnded:
			out = append(out, Violation{Check: "ack", Merchant: in.Merchant,
				Detail: fmt.Sprintf("op %d (%s) was answered with session %s, which the shard does not know", op.ID, model.Describe(in, o), o.Session)})
		case s != nil && in.Kind == model.End && s.GetState() != pb.SessionState_SESSION_STATE_ENDED:
			out = append(out, Violation{Check: "ack", Merchant: in.Merchant,
				Detail: fmt.Sprintf("op %d ended session %s, which is %v", op.ID, o.Session, s.GetState())})
		}
	}
	for _, id := range sortedKeys(f.Merchants) {
		st := f.Merchants[id].Stats.GetStats()
		reasons := st.GetEndedByReason()
		ended := func(r pb.EndReason) uint64 {
			if int(r) < len(reasons) {
				return reasons[r]
			}
			return 0
		}
		shard := map[string]uint64{
			"consult": st.GetConsults(), "escalate": st.GetEscalated(),
			"TRANSFERRED":  ended(pb.EndReason_END_REASON_TRANSFERRED),
			"AGENT_ENDED":  ended(pb.EndReason_END_REASON_AGENT_ENDED),
			"BUYER_LEFT":   ended(pb.EndReason_END_REASON_BUYER_LEFT),
			"BOT_RESOLVED": ended(pb.EndReason_END_REASON_BOT_RESOLVED),
		}
		for _, k := range sortedKeys(shard) {
			c := counts[id][k]
			if c == nil {
				c = &count{}
			}
			if n := shard[k]; n < c.acked || n > c.acked+c.unknown {
				out = append(out, Violation{Check: "ack", Merchant: id, Detail: fmt.Sprintf(
					"the shard counts %d %s, the clients were answered %d (and %d more may have been applied)", n, k, c.acked, c.unknown)})
			}
		}
	}
	return out
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
