package fsm

import (
	"iter"
	"math/rand/v2"
	"testing"
)

// len is how many pairs x holds.
func (x *hashIndex) len() int { return x.n }

// all yields every (hash, value) pair of x, in table order: for checks
// that look at the whole index (the invariants).
func (x *hashIndex) all() iter.Seq2[uint64, uint64] {
	return func(yield func(uint64, uint64) bool) {
		for _, s := range x.slots {
			if s.v != 0 && !yield(s.h, s.v) {
				return
			}
		}
	}
}

// checkHashIndex compares x with want, the pairs it should hold, through
// every way of reading it, and checks that every pair is reachable from
// its home without crossing an empty slot (what lookups rely on).
func checkHashIndex(t *testing.T, x *hashIndex, want map[uint64]uint64) {
	t.Helper()
	if x.len() != len(want) {
		t.Fatalf("len %d, want %d", x.len(), len(want))
	}
	n := 0
	for h, v := range x.all() {
		n++
		if want[h] != v {
			t.Fatalf("holds %x → %d, want %d", h, v, want[h])
		}
		for i := x.home(h); x.slots[i].h != h || x.slots[i].v == 0; i = x.next(i) {
			if x.slots[i].v == 0 {
				t.Fatalf("%x is not reachable from its home %d", h, x.home(h))
			}
		}
	}
	if n != len(want) {
		t.Fatalf("all yields %d pairs, want %d", n, len(want))
	}
	for h, v := range want {
		if got := x.get(h); got != v {
			t.Fatalf("get(%x) = %d, want %d", h, got, v)
		}
	}
	if len(x.slots) > 0 && x.n*2 > len(x.slots) {
		t.Fatalf("%d pairs in %d slots: over half full", x.n, len(x.slots))
	}
}

// The index answers as a map of the same pairs would, through puts,
// replacements, conditional deletes and resets, with hashes drawn from a
// small set (so runs, wrap-arounds and backward shifts are frequent) and
// from all 64 bits.
func TestHashIndexAgreesWithAMap(t *testing.T) {
	for _, keys := range []uint64{40, 1 << 62} {
		rng := rand.New(rand.NewPCG(7, keys))
		var x hashIndex
		want := map[uint64]uint64{}
		key := func() uint64 {
			if keys < 1000 { // crowd a few homes: hashes k·16 + small
				return rng.Uint64N(keys)*16 + rng.Uint64N(3)
			}
			return rng.Uint64()
		}
		for step := range 200_000 {
			h := key()
			switch op := rng.IntN(100); {
			case op < 55:
				v := rng.Uint64N(1000) + 1
				if got := x.put(h, v); got != want[h] {
					t.Fatalf("step %d: put(%x) replaced %d, want %d", step, h, got, want[h])
				}
				want[h] = v
			case op < 95:
				if len(want) > 0 && rng.IntN(2) == 0 { // delete a held pair, mostly with its value
					for h = range want {
						break
					}
				}
				v := want[h]
				if rng.IntN(4) == 0 {
					v++ // a value it does not hold: no delete
				}
				deleted := x.deleteIf(h, v)
				held, ok := want[h]
				if wantDel := ok && held == v; deleted != wantDel {
					t.Fatalf("step %d: deleteIf(%x, %d) = %v, want %v", step, h, v, deleted, wantDel)
				}
				if deleted {
					delete(want, h)
				}
			case op < 96:
				x.reset()
				clear(want)
			default:
				if got := x.get(h); got != want[h] {
					t.Fatalf("step %d: get(%x) = %d, want %d", step, h, got, want[h])
				}
			}
			if step%97 == 0 {
				checkHashIndex(t, &x, want)
			}
		}
		checkHashIndex(t, &x, want)
	}
}

// A delete in a run that wraps around the table's end moves the pairs
// after it back across the end, and leaves pairs at their home alone.
func TestHashIndexDeleteAcrossTheEnd(t *testing.T) {
	var x hashIndex
	x.put(1, 1) // gives the table its first 16 slots
	if len(x.slots) != minHashIndexSlots {
		t.Fatalf("first table of %d slots, want %d", len(x.slots), minHashIndexSlots)
	}
	want := map[uint64]uint64{1: 1}
	// Three pairs whose home is the last slot (15, 31, 47: 15 mod 16), the
	// run wrapping past 1 (at its home, slot 1), then 17, whose home slot 1
	// is taken.
	for _, h := range []uint64{15, 31, 47, 17} {
		x.put(h, h+100)
		want[h] = h + 100
	}
	checkHashIndex(t, &x, want)
	if x.slots[15].h != 15 || x.slots[0].h != 31 || x.slots[1].h != 1 || x.slots[2].h != 47 {
		t.Fatalf("layout: %v", x.slots[:4])
	}
	if !x.deleteIf(15, 115) {
		t.Fatal("deleteIf(15, 115) = false")
	}
	delete(want, 15)
	checkHashIndex(t, &x, want)
	if x.slots[15].h != 31 || x.slots[1].h != 1 {
		t.Fatalf("after the delete, slot 15 holds %x and slot 1 %x; want 31 moved back and 1 left at home", x.slots[15].h, x.slots[1].h)
	}
	if x.deleteIf(31, 1) || x.deleteIf(99, 0) {
		t.Fatal("deleteIf with a value not held, or of a hash not held, deleted")
	}
	checkHashIndex(t, &x, want)
}

// Growing keeps every pair; a reset keeps the table for the next pairs.
func TestHashIndexGrowsAndResets(t *testing.T) {
	var x hashIndex
	if x.get(5) != 0 || x.deleteIf(5, 1) {
		t.Fatal("an empty index answered for 5")
	}
	want := map[uint64]uint64{}
	for i := range uint64(5000) {
		h := i * 0x9e3779b97f4a7c15
		x.put(h, i+1)
		want[h] = i + 1
	}
	checkHashIndex(t, &x, want)
	size := len(x.slots)
	if size < 2*5000 || size > 4*5000 {
		t.Fatalf("%d slots for 5,000 pairs, want between 2 and 4 per pair", size)
	}
	x.reset()
	checkHashIndex(t, &x, map[uint64]uint64{})
	if len(x.slots) != size {
		t.Fatalf("reset left %d slots, want the %d it had", len(x.slots), size)
	}
}

func TestHashIndexPutZeroPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("put of value 0 did not panic")
		}
	}()
	var x hashIndex
	x.put(1, 0)
}

// BenchmarkHashIndexPut inserts into 32 tables in turn, each emptied at
// 50,000 pairs (a de-dup generation's size at the default MaxDedup), as
// a node's shards do, against a Go map doing the same: the cost is the
// cache miss of reaching a pair's place in a table far larger than the
// caches.
func BenchmarkHashIndexPut(b *testing.B) {
	const tables, per = 32, 50_000
	rng := rand.New(rand.NewPCG(1, 2))
	hashes := make([]uint64, 1<<20)
	for i := range hashes {
		hashes[i] = rng.Uint64()
	}
	b.Run("map", func(b *testing.B) {
		ms := make([]map[uint64]uint64, tables)
		for i := range ms {
			ms[i] = map[uint64]uint64{}
		}
		for i := 0; b.Loop(); i++ {
			m := ms[i%tables]
			if len(m) == per {
				clear(m)
			}
			h := hashes[i&(len(hashes)-1)]
			_ = m[h] // what put answers: the value it replaces
			m[h] = uint64(i) + 1
		}
	})
	b.Run("hashIndex", func(b *testing.B) {
		xs := make([]hashIndex, tables)
		for i := 0; b.Loop(); i++ {
			x := &xs[i%tables]
			if x.len() == per {
				x.reset()
			}
			x.put(hashes[i&(len(hashes)-1)], uint64(i)+1)
		}
	})
}
