package fsm

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
)

// endedKeys lists the kept (merchant, session) pairs, oldest first.
func endedKeys(e *endedStore) []string {
	var out []string
	e.each(func(m, id, _ []byte) bool {
		out = append(out, string(m)+"/"+string(id))
		return true
	})
	return out
}

// Keys whose hashes collide are told apart by comparing them whole, also
// once older entries of the chain are gone.
func TestEndedCollisionsCompareWholeKeys(t *testing.T) {
	e := newEndedStore()
	const h = 42 // every key below gets the same hash
	keys := [][2]string{{"m1", "s1"}, {"m1", "s2"}, {"m2", "s1"}, {"m1s", "1"}, {"", "m1s1"}}
	for i, k := range keys {
		e.putHashed(h, k[0], k[1], fmt.Appendf(nil, "enc%d", i), 10)
	}
	for i, k := range keys {
		s := e.findHashed(h, k[0], k[1])
		if s == nil {
			t.Fatalf("%v: not found", k)
		}
		if _, _, enc := e.bytes(s); string(enc) != fmt.Sprint("enc", i) {
			t.Errorf("%v: found %q, want enc%d", k, enc, i)
		}
	}
	for _, k := range [][2]string{{"m1", "s3"}, {"m", "1s1"}, {"m1s1", ""}} {
		if s := e.findHashed(h, k[0], k[1]); s != nil {
			m, id, _ := e.bytes(s)
			t.Errorf("%v: found %s/%s, which was never put", k, m, id)
		}
	}
	if s := e.findHashed(h+1, keys[0][0], keys[0][1]); s != nil {
		t.Error("found a key under a hash it was not put with")
	}
	// Drop the two oldest: the chain from the newest ends where they were.
	e.pop()
	e.pop()
	for i, k := range keys {
		found := e.findHashed(h, k[0], k[1]) != nil
		if found != (i >= 2) {
			t.Errorf("%v after dropping the two oldest: found %v", k, found)
		}
	}
	for range 3 {
		e.pop()
	}
	if e.index.len() != 0 {
		t.Errorf("index after dropping every entry: %d pairs", e.index.len())
	}
}

// The store keeps the newest limit entries in order, answers for them
// only, and keeps only the arena blocks they use.
func TestEndedKeepsTheNewest(t *testing.T) {
	e := newEndedStore()
	const limit = 1000
	enc := bytes.Repeat([]byte("x"), 300) // ~210 per block
	for i := range 5000 {
		e.put(fmt.Sprint("m", i%7), fmt.Sprint("s", i), append(enc, fmt.Sprint(i)...), limit)
	}
	keys := endedKeys(&e)
	if len(keys) != limit || e.len() != limit {
		t.Fatalf("%d entries kept (len %d); want %d", len(keys), e.len(), limit)
	}
	for j, k := range keys {
		i := 4000 + j
		if want := fmt.Sprintf("m%d/s%d", i%7, i); k != want {
			t.Fatalf("entry %d is %s, want %s", j, k, want)
		}
	}
	for _, i := range []int{0, 3999} {
		if e.has(fmt.Sprint("m", i%7), fmt.Sprint("s", i)) {
			t.Errorf("s%d found after %d newer were kept", i, 5000-i-1)
		}
	}
	for _, i := range []int{4000, 4999} {
		s := e.find(fmt.Sprint("m", i%7), fmt.Sprint("s", i))
		if s == nil {
			t.Fatalf("s%d not found", i)
		}
		if _, _, got := e.bytes(s); !bytes.HasSuffix(got, []byte(fmt.Sprint(i))) || len(got) != len(enc)+len(fmt.Sprint(i)) {
			t.Errorf("s%d: %d bytes ending %q", i, len(got), got[len(got)-4:])
		}
	}
	if e.arena.blocks.len() > limit*310/arenaBlockSize+2 {
		t.Errorf("%d arena blocks kept for %d entries of ~310 bytes", e.arena.blocks.len(), limit)
	}
}

// Deleting a merchant forgets its ended sessions and keeps the others in
// order.
func TestEndedDropMerchant(t *testing.T) {
	e := newEndedStore()
	for i := range 30 {
		e.put(fmt.Sprint("m", i%3), fmt.Sprint("s", i), []byte{byte(i)}, 20)
	}
	e.dropMerchant("m1", 20)
	var want []string
	for i := 10; i < 30; i++ {
		if i%3 != 1 {
			want = append(want, fmt.Sprintf("m%d/s%d", i%3, i))
		}
	}
	if got := endedKeys(&e); !reflect.DeepEqual(got, want) {
		t.Fatalf("after dropping m1: %v, want %v", got, want)
	}
	if e.has("m1", "s28") || !e.has("m2", "s29") {
		t.Error("lookups do not match the entries kept")
	}
}
