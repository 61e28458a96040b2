package fsm

import (
	"sort"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// dedupTable remembers the results of recent commands by (merchant,
// request id), in two generations so that forgetting costs nothing per
// entry: when the current generation holds half of MaxDedup entries it
// becomes the older one and the previous older one is dropped whole (its map
// is cleared and reused, so a steady stream allocates nothing here); the
// older generation is also dropped once its newest entry is older than the
// time window. So a request id is remembered for at least
// min(DedupWindowMs of log time, MaxDedup/2 − 1 later commands), and the table
// never holds more than MaxDedup entries.
type dedupTable struct {
	cur, old dedupGen
}

// dedupKey scopes request ids by merchant, so tenants cannot collide.
type dedupKey struct{ merchant, request string }

// dedupEntry keeps a result encoded: a few dozen bytes instead of a
// message of ~180, which matters at a million remembered commands per node
// (BENCHMARKS.md, capacity). A retry, which is rare, decodes it.
type dedupEntry struct {
	timeMs int64
	result []byte
}

func encodeResult(r *pb.Result) []byte {
	b, err := r.MarshalVT()
	if err != nil {
		panic("fsm: encoding a result: " + err.Error()) // a bug: every Result encodes
	}
	return b
}

func (e dedupEntry) decode() *pb.Result {
	r := &pb.Result{}
	if err := r.UnmarshalVT(e.result); err != nil {
		panic("fsm: decoding a remembered result: " + err.Error()) // a bug: the bytes are our own
	}
	return r
}

type dedupGen struct {
	byKey  map[dedupKey]dedupEntry
	newest int64
}

func newDedupTable() dedupTable {
	return dedupTable{cur: dedupGen{byKey: map[dedupKey]dedupEntry{}}, old: dedupGen{byKey: map[dedupKey]dedupEntry{}}}
}

func (d *dedupTable) get(key dedupKey) (*pb.Result, bool) {
	if e, ok := d.cur.byKey[key]; ok {
		return e.decode(), true
	}
	if e, ok := d.old.byKey[key]; ok {
		return e.decode(), true
	}
	return nil, false
}

func (g *dedupGen) put(key dedupKey, now int64, r *pb.Result) {
	g.byKey[key] = dedupEntry{timeMs: now, result: encodeResult(r)}
	g.newest = max(g.newest, now)
}

func (g *dedupGen) drop() {
	clear(g.byKey)
	g.newest = 0
}

// put remembers a result; max is the table's MaxDedup.
func (d *dedupTable) put(key dedupKey, now int64, r *pb.Result, max int) {
	d.cur.put(key, now, r)
	if len(d.cur.byKey) >= max/2 {
		d.cur, d.old = d.old, d.cur
		d.cur.drop()
	}
}

// expire drops the older generation once all of it is older than cutoff.
func (d *dedupTable) expire(cutoff int64) {
	if len(d.old.byKey) > 0 && d.old.newest < cutoff {
		d.old.drop()
	}
}

func (d *dedupTable) len() int { return len(d.cur.byKey) + len(d.old.byKey) }

// each calls fn for every entry, older generation first, each generation
// sorted by key (map order never leaks).
func (d *dedupTable) each(fn func(key dedupKey, e dedupEntry, older bool) error) error {
	for _, g := range []struct {
		gen   *dedupGen
		older bool
	}{{&d.old, true}, {&d.cur, false}} {
		keys := make([]dedupKey, 0, len(g.gen.byKey))
		for k := range g.gen.byKey {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].merchant != keys[j].merchant {
				return keys[i].merchant < keys[j].merchant
			}
			return keys[i].request < keys[j].request
		})
		for _, k := range keys {
			if err := fn(k, g.gen.byKey[k], g.older); err != nil {
				return err
			}
		}
	}
	return nil
}

// commandMerchant is the merchant a command addresses ("" for tick).
func commandMerchant(c *pb.Command) string {
	switch b := c.Body.(type) {
	case *pb.Command_UpsertMerchant:
		return b.UpsertMerchant.MerchantId
	case *pb.Command_DeleteMerchant:
		return b.DeleteMerchant.MerchantId
	case *pb.Command_UpsertGroup:
		return b.UpsertGroup.MerchantId
	case *pb.Command_DeleteGroup:
		return b.DeleteGroup.MerchantId
	case *pb.Command_UpsertAgent:
		return b.UpsertAgent.MerchantId
	case *pb.Command_DeleteAgent:
		return b.DeleteAgent.MerchantId
	case *pb.Command_SetAgentStatus:
		return b.SetAgentStatus.MerchantId
	case *pb.Command_Consult:
		return b.Consult.MerchantId
	case *pb.Command_Escalate:
		return b.Escalate.MerchantId
	case *pb.Command_Transfer:
		return b.Transfer.MerchantId
	case *pb.Command_End:
		return b.End.MerchantId
	case *pb.Command_FirstReply:
		return b.FirstReply.MerchantId
	case *pb.Command_PullNext:
		return b.PullNext.MerchantId
	}
	return ""
}

// CommandMerchant is the merchant a command addresses ("" for a tick); the
// shard layer uses it to route and the API to authorize.
func CommandMerchant(c *pb.Command) string { return commandMerchant(c) }
