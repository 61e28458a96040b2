package fsm

import (
	"bytes"
	"hash/maphash"
	"slices"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// dedupTable remembers the results of recent commands by (merchant,
// request id), in two generations so that forgetting costs nothing per
// entry: when the current generation holds half of MaxDedup entries it
// becomes the older one and the previous older one is dropped whole; the
// older generation is also dropped once its newest entry is older than the
// time window. So a request id is remembered for at least
// min(DedupWindowMs of log time, MaxDedup/2 − 1 later commands), and the table
// never holds more than MaxDedup entries.
//
// A generation holds no pointers the garbage collector has to follow per
// entry: keys and encoded results are bytes in one arena, entries are
// values in one slice, and the index maps a hash of the key to an entry
// (a hashIndex of integers, which the collector does not scan). A shard's table
// holds up to 100,000 entries and a node holds a table per shard, so with
// strings and byte slices per entry (as before) the collector followed
// millions of pointers per cycle (BENCHMARKS.md, "The de-dup table without
// pointers").
type dedupTable struct {
	seed     maphash.Seed
	max      int // MaxDedup: a generation holds max/2 entries
	cur, old dedupGen
}

// dedupKey scopes request ids by merchant, so tenants cannot collide.
type dedupKey struct{ merchant, request string }

// dedupGen is one generation. Its slots and arena are only ever appended
// to: dropping the generation gives it new ones, so a snapshot's copy of
// them (dedupGen.view) stays valid while later commands are applied.
// index is not part of a view.
type dedupGen struct {
	// index maps a key's hash to 1 + the newest slot with that hash;
	// slots with the same hash are chained through dedupSlot.next.
	// Lookups compare the whole key, so a collision costs a comparison,
	// never a wrong answer.
	index hashIndex
	// filter holds every hash in index, so that a lookup of a key not in
	// the generation — nearly every command's, and every generation is
	// looked in — is mostly answered without probing index (nil: no
	// filter). Not part of a view.
	filter dedupFilter
	slots  chunkList[dedupSlot]
	arena  byteArena // per slot: merchant id, request id, encoded result
	newest int64
}

// dedupSlot is one remembered result: its key and result are the
// mlen+rlen+reslen bytes at (block, off) in the arena. It keeps the result
// encoded: a few dozen bytes instead of a message of ~180, which matters
// at a million remembered commands per node (BENCHMARKS.md, capacity). A
// retry, which is rare, decodes it.
type dedupSlot struct {
	timeMs             int64
	block, off         uint32
	mlen, rlen, reslen uint32
	next               int32 // the previous slot with the same hash; -1: none
}

func (g *dedupGen) merchant(s *dedupSlot) []byte {
	return g.arena.at(uint64(s.block), s.off, s.mlen)
}

func (g *dedupGen) request(s *dedupSlot) []byte {
	return g.arena.at(uint64(s.block), s.off+s.mlen, s.rlen)
}

func (g *dedupGen) result(s *dedupSlot) []byte {
	return g.arena.at(uint64(s.block), s.off+s.mlen+s.rlen, s.reslen)
}

func (g *dedupGen) key(s *dedupSlot) dedupKey {
	return dedupKey{merchant: string(g.merchant(s)), request: string(g.request(s))}
}

func (g *dedupGen) decode(s *dedupSlot) *pb.Result {
	r := &pb.Result{}
	if err := r.UnmarshalVT(g.result(s)); err != nil {
		panic("fsm: decoding a remembered result: " + err.Error()) // a bug: the bytes are our own
	}
	return r
}

// newDedupTable returns an empty table for at most max entries. Its hash
// seed is random, as every Go map's is: it decides where an entry is kept,
// never what a lookup answers (keys are compared whole), so replicas still
// agree.
func newDedupTable(max int) dedupTable {
	return dedupTable{seed: maphash.MakeSeed(), max: max}
}

// dedupFilter is a blocked Bloom filter of 64-bit hashes: three bits in one
// word per hash, 8–16 bits per entry (10.5 for the default 50,000 per
// generation: 2% false positives). It answers "no" or "maybe", never a
// wrong "no". Measured in W1 at 1,024 clients before it: the index probes
// of the two generations (mostly misses: cache misses in maps of 50,000
// entries) were 5% of the nodes' CPU (BENCHMARKS.md, fourteenth session).
type dedupFilter []uint64

// maxFilterWords caps a filter at 512 KiB: it is allocated whole with a
// generation's first entry, and a MaxDedup of millions would otherwise cost
// that many bytes per busy shard at once. Past ~500,000 entries a generation's filter
// answers "maybe" more often, never wrongly.
const maxFilterWords = 1 << 16

func newDedupFilter(entries int) dedupFilter {
	words := 1
	for words*64 < entries*8 && words < maxFilterWords {
		words *= 2
	}
	return make(dedupFilter, words)
}

// at returns h's word and bits. The word comes from high bits of h, the
// bits from low ones, so the two are independent.
func (f dedupFilter) at(h uint64) (*uint64, uint64) {
	return &f[(h>>40)&uint64(len(f)-1)], 1<<(h&63) | 1<<((h>>6)&63) | 1<<((h>>12)&63)
}

func (f dedupFilter) add(h uint64) {
	if len(f) > 0 {
		w, bits := f.at(h)
		*w |= bits
	}
}

// mayHave reports whether h may have been added; false means it was not.
func (f dedupFilter) mayHave(h uint64) bool {
	if len(f) == 0 {
		return true
	}
	w, bits := f.at(h)
	return *w&bits == bits
}

func (d *dedupTable) hash(key dedupKey) uint64 { return maphash.Comparable(d.seed, key) }

// find returns the slot of key in g, or nil.
func (g *dedupGen) find(h uint64, key dedupKey) *dedupSlot {
	if !g.filter.mayHave(h) {
		return nil
	}
	return g.chain(g.index.get(h), key)
}

// chain returns the slot of key among the slots chained from newest (an
// index value: 1 + a slot; 0: none), or nil.
func (g *dedupGen) chain(newest uint64, key dedupKey) *dedupSlot {
	for i := int32(newest) - 1; i >= 0; {
		s := g.slots.at(int(i))
		if string(g.merchant(s)) == key.merchant && string(g.request(s)) == key.request {
			return s
		}
		i = s.next
	}
	return nil
}

// get returns the result remembered for key, whose hash is h (d.hash).
//
// It reads the current generation's index where h belongs before asking
// that generation's filter, though the filter nearly always answers "no":
// a new key is put there next (dedupTable.put, after the command is
// applied), so the read brings in the line the insert will write, and the
// two reads' cache misses overlap instead of the insert taking its own
// later.
func (d *dedupTable) get(h uint64, key dedupKey) (*pb.Result, bool) {
	newest := d.cur.index.get(h)
	if d.cur.filter.mayHave(h) {
		if s := d.cur.chain(newest, key); s != nil {
			return d.cur.decode(s), true
		}
	}
	if s := d.old.find(h, key); s != nil {
		return d.old.decode(s), true
	}
	return nil, false
}

// put appends key's result; the key must not be in g already.
func (g *dedupGen) put(h uint64, key dedupKey, now int64, r *pb.Result) {
	size := r.SizeVT()
	block, off, dst := g.arena.alloc(len(key.merchant) + len(key.request) + size)
	n := copy(dst, key.merchant)
	n += copy(dst[n:], key.request)
	if _, err := r.MarshalToSizedBufferVT(dst[n:]); err != nil {
		panic("fsm: encoding a result: " + err.Error()) // a bug: every Result encodes
	}
	// The slot goes at the end; the index answers the slot it replaces
	// as the newest with hash h (0: none) with the same probe.
	next := int32(g.index.put(h, uint64(g.slots.len())+1)) - 1
	g.filter.add(h)
	g.slots.push(dedupSlot{timeMs: now, block: uint32(block), off: off,
		mlen: uint32(len(key.merchant)), rlen: uint32(len(key.request)), reslen: uint32(size), next: next})
	g.newest = max(g.newest, now)
}

// drop empties g. Its slots and arena are let go rather than reused, so
// that a snapshot's view of them stays valid.
func (g *dedupGen) drop() {
	g.index.reset()
	clear(g.filter)
	g.slots = chunkList[dedupSlot]{}
	g.arena = byteArena{}
	g.newest = 0
}

// view is a copy of g that later puts and drops of g do not change.
func (g *dedupGen) view() dedupGen {
	return dedupGen{slots: g.slots.view(), arena: g.arena.view(), newest: g.newest}
}

// put remembers a result for a key in neither generation, whose hash is h.
func (d *dedupTable) put(h uint64, key dedupKey, now int64, r *pb.Result) {
	d.putIn(&d.cur, h, key, now, r)
	if d.cur.slots.len() >= d.max/2 {
		d.cur, d.old = d.old, d.cur
		d.cur.drop()
	}
}

// restore adds a snapshot's record to the older or the current generation.
func (d *dedupTable) restore(key dedupKey, now int64, r *pb.Result, older bool) {
	g := &d.cur
	if older {
		g = &d.old
	}
	d.putIn(g, d.hash(key), key, now, r)
}

// putIn puts into g, first giving it its filter if it has none: a shard
// that never sees a command allocates none (a node opens up to 64 shards).
// g's index grows with its entries, so a restored snapshot written with a
// larger MaxDedup fits whole (and the next put starts a new generation).
func (d *dedupTable) putIn(g *dedupGen, h uint64, key dedupKey, now int64, r *pb.Result) {
	if g.filter == nil {
		g.filter = newDedupFilter(d.max / 2)
	}
	g.put(h, key, now, r)
}

// expire drops the older generation once all of it is older than cutoff.
func (d *dedupTable) expire(cutoff int64) {
	if d.old.slots.len() > 0 && d.old.newest < cutoff {
		d.old.drop()
	}
}

func (d *dedupTable) len() int { return d.cur.slots.len() + d.old.slots.len() }

// dedupEach calls fn for every entry of the generations old and cur (views
// or live), old first, each generation sorted by key: a snapshot does not
// depend on the order entries were added in (a restored replica adds them
// in key order, the others in log order).
func dedupEach(old, cur *dedupGen, fn func(key dedupKey, timeMs int64, result []byte, older bool) error) error {
	for _, g := range []struct {
		gen   *dedupGen
		older bool
	}{{old, true}, {cur, false}} {
		slots := &g.gen.slots
		order := make([]int32, slots.len())
		for i := range order {
			order[i] = int32(i)
		}
		slices.SortFunc(order, func(a, b int32) int {
			sa, sb := slots.at(int(a)), slots.at(int(b))
			if c := bytes.Compare(g.gen.merchant(sa), g.gen.merchant(sb)); c != 0 {
				return c
			}
			return bytes.Compare(g.gen.request(sa), g.gen.request(sb))
		})
		for _, i := range order {
			s := slots.at(int(i))
			if err := fn(g.gen.key(s), s.timeMs, g.gen.result(s), g.older); err != nil {
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
