package fsm

import (
	"hash/maphash"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// endedStore keeps a shard's recently ended sessions, oldest first, each
// as its encoded pb.Session, found by (merchant, session id); at most
// Config.MaxEnded of them (the oldest goes first).
//
// Like the de-dup table (dedup.go) it holds no pointer per session for the
// garbage collector to follow: ids and encoded sessions are bytes in arena
// blocks, entries are values in a queue, and the index maps a 64-bit hash
// of the key to the newest entry with that hash (older ones with the same
// hash are chained through endedSlot.prev; lookups compare whole keys).
// A node keeps up to MaxEnded per shard — 160,000 with 16 shards — and
// kept as a map of strings to byte slices per merchant and a ring of id
// pairs, they cost W1's nodes about a third of their collector's CPU
// (BENCHMARKS.md, "Ended sessions without pointers").
//
// Entries are numbered from 1 in the order they were kept (seq); an
// entry's seq never changes, so chains stay valid as the oldest go: a
// link to a seq below the oldest kept one ends the chain.
type endedStore struct {
	seed  maphash.Seed
	index hashIndex       // key hash → seq of the newest entry with it
	slots fifo[endedSlot] // kept entries, oldest first
	first uint64          // seq of slots.at(0); next seq is first+len
	arena byteArena       // merchant id, session id, encoded session per entry
}

// endedSlot is one ended session: merchant id, session id and encoded
// session, in that order, at (block, off) in the arena.
type endedSlot struct {
	hash       uint64
	prev       uint64 // seq of the previous entry with the same hash; 0: none
	block      uint64
	off        uint32
	mlen, slen uint32
	blen       uint32
}

func newEndedStore() endedStore {
	return endedStore{seed: maphash.MakeSeed(), first: 1}
}

func (e *endedStore) len() int { return e.slots.len() }

func (e *endedStore) hash(merchant, session string) uint64 {
	return maphash.Comparable(e.seed, [2]string{merchant, session})
}

func (e *endedStore) bytes(s *endedSlot) (merchant, session, enc []byte) {
	b := e.arena.at(s.block, s.off, s.mlen+s.slen+s.blen)
	return b[:s.mlen], b[s.mlen : s.mlen+s.slen], b[s.mlen+s.slen:]
}

// find returns the slot of (merchant, session), or nil.
func (e *endedStore) find(merchant, session string) *endedSlot {
	return e.findHashed(e.hash(merchant, session), merchant, session)
}

// findHashed is find for a key whose hash is h.
func (e *endedStore) findHashed(h uint64, merchant, session string) *endedSlot {
	for seq := e.index.get(h); seq >= e.first; {
		s := e.slots.ptr(int(seq - e.first))
		m, id, _ := e.bytes(s)
		if string(m) == merchant && string(id) == session {
			return s
		}
		seq = s.prev
	}
	return nil
}

// has reports whether (merchant, session) is kept.
func (e *endedStore) has(merchant, session string) bool { return e.find(merchant, session) != nil }

// get decodes the kept session (merchant, session); nil if not kept.
func (e *endedStore) get(merchant, session string) *pb.Session {
	s := e.find(merchant, session)
	if s == nil {
		return nil
	}
	_, _, enc := e.bytes(s)
	out := &pb.Session{}
	if err := out.UnmarshalVT(enc); err != nil {
		panic("fsm: decoding an ended session: " + err.Error()) // a bug: the bytes are our own
	}
	return out
}

// put keeps an ended session, encoded as enc (not retained), as the
// newest; the key must not be kept already. The oldest entries go first so
// that at most limit (at least 1) are kept.
func (e *endedStore) put(merchant, session string, enc []byte, limit int) {
	e.putHashed(e.hash(merchant, session), merchant, session, enc, limit)
}

// putHashed is put for a key whose hash is h.
func (e *endedStore) putHashed(h uint64, merchant, session string, enc []byte, limit int) {
	copy(e.reserve(h, merchant, session, len(enc), limit), enc)
}

// putSession is put with the session encoded straight into the arena.
func (e *endedStore) putSession(s *pb.Session, limit int) {
	dst := e.reserve(e.hash(s.MerchantId, s.SessionId), s.MerchantId, s.SessionId, s.SizeVT(), limit)
	if _, err := s.MarshalToSizedBufferVT(dst); err != nil {
		panic("fsm: encoding a session: " + err.Error()) // a bug: every Session encodes
	}
}

// reserve adds the entry (merchant, session) of n encoded bytes, with hash
// h, and returns where its bytes go.
func (e *endedStore) reserve(h uint64, merchant, session string, n, limit int) []byte {
	for e.slots.len() >= limit && e.slots.len() > 0 {
		e.pop()
	}
	block, off, dst := e.arena.alloc(len(merchant) + len(session) + n)
	k := copy(dst, merchant)
	k += copy(dst[k:], session)
	seq := e.first + uint64(e.slots.len())
	e.slots.push(endedSlot{hash: h, prev: e.index.put(h, seq), block: block, off: off,
		mlen: uint32(len(merchant)), slen: uint32(len(session)), blen: uint32(n)})
	return dst[k:]
}

// pop drops the oldest entry, and the arena blocks no kept entry uses.
func (e *endedStore) pop() {
	s := e.slots.pop()
	e.index.deleteIf(s.hash, e.first) // if the newest with its hash: the only one
	e.first++
	oldest := e.arena.end() // with no entry left, keep the current block
	if e.slots.len() > 0 {
		oldest = e.slots.front().block
	}
	e.arena.dropBefore(oldest)
}

// each calls fn with every kept entry, oldest first, until it returns
// false. The byte slices are valid until the next put or dropMerchant.
func (e *endedStore) each(fn func(merchant, session, enc []byte) bool) {
	for i := 0; i < e.slots.len(); i++ {
		if !fn(e.bytes(e.slots.ptr(i))) {
			return
		}
	}
}

// dropMerchant forgets every kept session of merchant, keeping the order
// of the others.
func (e *endedStore) dropMerchant(merchant string, limit int) {
	old := *e
	*e = newEndedStore()
	e.seed = old.seed
	old.each(func(m, id, enc []byte) bool {
		if string(m) != merchant {
			e.put(string(m), string(id), enc, limit)
		}
		return true
	})
}
