package fsm

// hashIndex maps 64-bit key hashes to non-zero 64-bit values: the lookup
// index of the de-dup table (a hash → its newest slot) and of the ended
// sessions (a hash → its newest entry's seq). Both only ever need "the
// newest entry with this hash", chaining older ones themselves, so the
// index holds one value per hash.
//
// It is an open-addressing table with linear probing, kept between a
// quarter and half full, of (hash, value) pairs with value 0 marking an
// empty slot. Against a Go map of the same pairs it answers "set this and
// tell me what was there" and "delete this if it still holds that" with
// one probe each, where a map needs a lookup and an assignment (or a
// deletion). Under W1 every command inserts into the de-dup index and
// every end inserts into the ended index and deletes from it, each a
// cache miss in a table of tens of thousands of pairs: with Go maps those
// operations were 15–19% of BenchmarkApplyW1/shards=16's apply samples,
// and this table took the benchmark 10–13% faster per command
// (BenchmarkHashIndexPut: 50–54 ns against the map's 128–131; BENCHMARKS.md,
// seventeenth session).
//
// Where a pair lives depends on the hash only, so replicas whose tables
// were built in different orders still answer alike. No pointers: the
// collector never scans it.
type hashIndex struct {
	slots []hashIndexSlot // len is 0 or a power of two
	n     int             // pairs held
}

type hashIndexSlot struct{ h, v uint64 }

// minHashIndexSlots is a table's first size: small, because a node
// holds an ended index and two de-dup indexes per shard, most of them
// for shards that see few commands.
const minHashIndexSlots = 16

// home is the first slot h is looked for in; len(x.slots) > 0.
func (x *hashIndex) home(h uint64) int { return int(h & uint64(len(x.slots)-1)) }

// next is the slot after i, wrapping around.
func (x *hashIndex) next(i int) int { return (i + 1) & (len(x.slots) - 1) }

// get returns h's value, or 0 if h is not held.
func (x *hashIndex) get(h uint64) uint64 {
	if x.n == 0 {
		return 0
	}
	for i := x.home(h); ; i = x.next(i) {
		s := &x.slots[i]
		if s.v == 0 {
			return 0
		}
		if s.h == h {
			return s.v
		}
	}
}

// put sets h's value to v (non-zero) and returns the value it replaces,
// 0 if h was not held.
func (x *hashIndex) put(h, v uint64) uint64 {
	if v == 0 {
		panic("fsm: hashIndex.put of value 0") // a bug: 0 marks empty slots
	}
	if (x.n+1)*2 > len(x.slots) {
		x.grow()
	}
	for i := x.home(h); ; i = x.next(i) {
		s := &x.slots[i]
		if s.v == 0 {
			*s = hashIndexSlot{h: h, v: v}
			x.n++
			return 0
		}
		if s.h == h {
			old := s.v
			s.v = v
			return old
		}
	}
}

// deleteIf removes h if its value is v, and reports whether it did.
func (x *hashIndex) deleteIf(h, v uint64) bool {
	if x.n == 0 {
		return false
	}
	i := x.home(h)
	for ; ; i = x.next(i) {
		s := &x.slots[i]
		if s.v == 0 {
			return false
		}
		if s.h == h {
			if s.v != v {
				return false
			}
			break
		}
	}
	// Backward-shift deletion: move later pairs of the run into the hole
	// when the hole lies between their home and where they are, so every
	// pair stays reachable from its home without tombstones.
	for j := x.next(i); ; j = x.next(j) {
		s := x.slots[j]
		if s.v == 0 {
			break
		}
		k := x.home(s.h)
		// s may move to i if i is in the cyclic range [k, j).
		if (i <= j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
			x.slots[i] = s
			i = j
		}
	}
	x.slots[i] = hashIndexSlot{}
	x.n--
	return true
}

// reset empties x, keeping its table for the next pairs.
func (x *hashIndex) reset() {
	clear(x.slots)
	x.n = 0
}

// grow doubles the table (or gives x its first one) and puts every pair
// back.
func (x *hashIndex) grow() {
	old := x.slots
	x.slots = make([]hashIndexSlot, max(minHashIndexSlots, 2*len(old)))
	for _, s := range old {
		if s.v == 0 {
			continue
		}
		i := x.home(s.h)
		for x.slots[i].v != 0 {
			i = x.next(i)
		}
		x.slots[i] = s
	}
}
