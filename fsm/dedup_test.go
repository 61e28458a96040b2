package fsm

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Keys whose hashes collide are told apart by comparing them whole.
func TestDedupCollisionsCompareWholeKeys(t *testing.T) {
	var g dedupGen
	const h = 42 // every key below gets the same hash
	keys := []dedupKey{{"m1", "r1"}, {"m1", "r2"}, {"m2", "r1"}, {"m1r", "1"}, {"", "m1r1"}}
	for i, k := range keys {
		g.put(h, k, int64(i), &pb.Result{SessionId: fmt.Sprint("s", i)})
	}
	for i, k := range keys {
		s := g.find(h, k)
		if s == nil {
			t.Fatalf("%v: not found", k)
		}
		if got := g.decode(s).SessionId; got != fmt.Sprint("s", i) || s.timeMs != int64(i) {
			t.Errorf("%v: found session %q at %d, want s%d at %d", k, got, s.timeMs, i, i)
		}
	}
	for _, k := range []dedupKey{{"m1", "r3"}, {"m", "1r1"}, {"m1r1", ""}} {
		if s := g.find(h, k); s != nil {
			t.Errorf("%v: found %v, which was never put", k, g.key(s))
		}
	}
	if s := g.find(h+1, keys[0]); s != nil {
		t.Errorf("found %v under a hash it was not put with", g.key(s))
	}
}

// A snapshot's view of a generation keeps its entries while the table
// goes on: entries added, generations rotated and dropped, arenas grown.
func TestDedupViewOutlivesDrops(t *testing.T) {
	d := newDedupTable(8) // a generation rotates at 4 entries
	put := func(i int) {
		k := dedupKey{merchant: "m", request: fmt.Sprintf("r%03d", i)}
		d.put(d.hash(k), k, int64(i), &pb.Result{SessionId: fmt.Sprint("session-", i)})
	}
	for i := range 6 {
		put(i)
	}
	old, cur := d.old.view(), d.cur.view()
	want := collectDedup(t, &old, &cur)
	if len(want) != 6 {
		t.Fatalf("the view holds %d entries, want 6: %v", len(want), want)
	}
	for i := 6; i < 40; i++ { // rotates, drops and regrows both generations many times
		put(i)
	}
	d.expire(1 << 40)
	if got := collectDedup(t, &old, &cur); !reflect.DeepEqual(got, want) {
		t.Fatalf("the view changed:\n got  %v\n want %v", got, want)
	}
	for i := 0; i < 32; i++ {
		k := dedupKey{merchant: "m", request: fmt.Sprintf("r%03d", i)}
		if _, ok := d.get(d.hash(k), k); ok {
			t.Errorf("%v still remembered after 8 more and an expiry", k)
		}
	}
}

func collectDedup(t *testing.T, old, cur *dedupGen) []string {
	t.Helper()
	var out []string
	err := dedupEach(old, cur, func(k dedupKey, timeMs int64, result []byte, older bool) error {
		r := &pb.Result{}
		if err := r.UnmarshalVT(result); err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s/%s@%d=%s older=%v", k.merchant, k.request, timeMs, r.SessionId, older))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The de-dup table's and the ended sessions' entries and indexes hold no
// pointers, so the garbage collector does not follow any per remembered
// command or ended session (the reason for their arenas).
func TestTablesHoldNoPointers(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[dedupSlot](), reflect.TypeFor[endedSlot](), reflect.TypeFor[hashIndexSlot]()} {
		if p := pointerField(typ); p != "" {
			t.Errorf("%v holds a pointer: %s", typ, p)
		}
	}
	for _, idx := range []reflect.Type{reflect.TypeOf(dedupGen{}.index), reflect.TypeOf(endedStore{}.index)} {
		if idx != reflect.TypeFor[hashIndex]() {
			t.Errorf("an index is a %v, not the hashIndex checked above", idx)
		}
	}
}

// pointerField names a part of typ the garbage collector would scan, or "".
func pointerField(typ reflect.Type) string {
	switch typ.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return ""
	case reflect.Array:
		return pointerField(typ.Elem())
	case reflect.Struct:
		for i := range typ.NumField() {
			if p := pointerField(typ.Field(i).Type); p != "" {
				return typ.Field(i).Name + "." + p
			}
		}
		return ""
	}
	return typ.Kind().String()
}

// The filter never says "no" for a hash it holds, and says "maybe" for few
// it does not hold at its intended load (a generation full).
func TestDedupFilter(t *testing.T) {
	const entries = 50_000
	f := newDedupFilter(entries)
	rng := rand.New(rand.NewPCG(1, 2))
	held := make([]uint64, entries)
	for i := range held {
		held[i] = rng.Uint64()
		f.add(held[i])
	}
	for _, h := range held {
		if !f.mayHave(h) {
			t.Fatalf("hash %x added, the filter says it was not", h)
		}
	}
	const probes = 100_000
	maybe := 0
	for range probes {
		if f.mayHave(rng.Uint64()) {
			maybe++
		}
	}
	rate := float64(maybe) / probes
	t.Logf("%d words for %d hashes: %.2f%% false positives", len(f), entries, 100*rate)
	if rate > 0.08 {
		t.Errorf("%.2f%% false positives at %d hashes, want at most 8%%", 100*rate, entries)
	}
	var none dedupFilter // no filter: every hash may be there
	if !none.mayHave(1) {
		t.Error("an empty filter said no")
	}
	if n := len(newDedupFilter(1 << 29)); n != maxFilterWords {
		t.Errorf("a filter for 2^29 entries has %d words, want the cap %d", n, maxFilterWords)
	}
}

// A generation gets its filter with its first entry, put or restored: an
// idle shard's table allocates none.
func TestDedupFilterWithFirstEntry(t *testing.T) {
	d := newDedupTable(100_000)
	if d.cur.filter != nil || d.old.filter != nil {
		t.Fatal("a new table already has filters")
	}
	k := dedupKey{merchant: "m", request: "r1"}
	d.put(d.hash(k), k, 1, &pb.Result{})
	d.restore(dedupKey{merchant: "m", request: "r0"}, 0, &pb.Result{}, true)
	if len(d.cur.filter) != 8192 || len(d.old.filter) != 8192 {
		t.Fatalf("filters of %d and %d words after an entry each, want 8,192 (50,000 entries)", len(d.cur.filter), len(d.old.filter))
	}
	if _, ok := d.get(d.hash(k), k); !ok {
		t.Fatal("the entry is not found")
	}
}
