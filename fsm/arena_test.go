package fsm

import (
	"bytes"
	"testing"
)

// What a byteArena stores stays where it was put, unchanged, as the arena
// grows (no copy of earlier strings), including strings larger than a
// block; a view keeps reading them after the arena lets blocks go.
func TestByteArenaNeverMovesWhatItHolds(t *testing.T) {
	var a byteArena
	type stored struct {
		block    uint64
		off      uint32
		want     []byte
		firstPtr *byte
	}
	var all []stored
	for i := range 3000 {
		n := 1 + i%97
		if i%1000 == 999 {
			n = arenaBlockSize + 10 // a block of its own
		}
		want := bytes.Repeat([]byte{byte(i)}, n)
		block, off, dst := a.alloc(n)
		if len(dst) != n || cap(dst) != n {
			t.Fatalf("alloc(%d): len %d cap %d", n, len(dst), cap(dst))
		}
		copy(dst, want)
		all = append(all, stored{block, off, want, &dst[0]})
	}
	v := a.view()
	for i, s := range all {
		got := a.at(s.block, s.off, uint32(len(s.want)))
		if !bytes.Equal(got, s.want) {
			t.Fatalf("string %d changed", i)
		}
		if &got[0] != s.firstPtr {
			t.Fatalf("string %d moved", i)
		}
	}
	a.dropBefore(all[len(all)-1].block)
	if a.first != all[len(all)-1].block || a.blocks.len() != 1 {
		t.Fatalf("after dropBefore(%d): first %d, %d blocks", all[len(all)-1].block, a.first, a.blocks.len())
	}
	for range 100 {
		a.alloc(500)
	}
	for i, s := range all {
		if got := v.at(s.block, s.off, uint32(len(s.want))); !bytes.Equal(got, s.want) {
			t.Fatalf("string %d changed in the view", i)
		}
	}
}

// A chunkList's values stay at their addresses as it grows; a view holds
// the values pushed before it.
func TestChunkListNeverMovesWhatItHolds(t *testing.T) {
	var c chunkList[[2]int]
	var view chunkList[[2]int]
	ptrs := make([]*[2]int, 0, 5000)
	for i := range 5000 {
		if got := c.push([2]int{i, -i}); got != i {
			t.Fatalf("push %d returned position %d", i, got)
		}
		ptrs = append(ptrs, c.at(i))
		if i == 2500 {
			view = c.view()
		}
	}
	for i, p := range ptrs {
		if c.at(i) != p || *p != [2]int{i, -i} {
			t.Fatalf("value %d moved or changed: %v", i, *c.at(i))
		}
	}
	if c.len() != 5000 {
		t.Fatalf("len %d, want 5000", c.len())
	}
	if view.len() != 2501 || *view.at(0) != [2]int{0, 0} || *view.at(2500) != [2]int{2500, -2500} {
		t.Errorf("view taken at 2,501 values: len %d, first %v, last %v", view.len(), *view.at(0), *view.at(view.len() - 1))
	}
}
