package node_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/frontdeskhq/frontdesk/node"
)

func ids(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

// TestPlaceDeterministic: the same members in any order, with duplicates,
// give the same placement, and each shard gets min(R, N) distinct voters.
func TestPlaceDeterministic(t *testing.T) {
	for _, tc := range []struct{ nodes, repl int }{{1, 3}, {2, 3}, {3, 3}, {5, 3}, {7, 5}, {4, 0}} {
		t.Run(fmt.Sprintf("%dnodes-r%d", tc.nodes, tc.repl), func(t *testing.T) {
			nodes := ids(tc.nodes, "node")
			want := node.Place(16, nodes, tc.repl)
			shuffled := slices.Clone(nodes)
			rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			shuffled = append(shuffled, nodes[0])
			got := node.Place(16, shuffled, tc.repl)
			for s := range want {
				if !slices.Equal(got[s], want[s]) {
					t.Fatalf("shard %d: %v with shuffled members, %v in order", s, got[s], want[s])
				}
				if len(want[s]) != min(tc.repl, tc.nodes) {
					t.Fatalf("shard %d: %d voters, want %d", s, len(want[s]), min(tc.repl, tc.nodes))
				}
				if c := slices.Compact(slices.Sorted(slices.Values(want[s]))); len(c) != len(want[s]) {
					t.Fatalf("shard %d: a node placed twice: %v", s, want[s])
				}
			}
		})
	}
}

// TestPlaceBalanced: every node holds ⌊S·R/N⌋ or ⌈S·R/N⌉ replicas.
func TestPlaceBalanced(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, shards := range []uint32{1, 7, 16, 64} {
		for n := 1; n <= 9; n++ {
			for trial := 0; trial < 30; trial++ {
				nodes := make([]string, n)
				for i := range nodes {
					nodes[i] = fmt.Sprintf("host-%x", rng.Uint32())
				}
				count := node.Place(shards, nodes, 3).Count()
				total := int(shards) * min(3, n)
				lo, hi := total/n, (total+n-1)/n
				for _, id := range nodes {
					if c := count[id]; c < lo || c > hi {
						t.Fatalf("%d shards on %d nodes: %s holds %d replicas, want %d..%d (%v)", shards, n, id, c, lo, hi, count)
					}
				}
			}
		}
	}
}

// TestPlaceMovesLittle: growing by one node moves few replicas more than
// the minimum (the replicas the new node must receive), and the voters of
// most shards do not change at all.
func TestPlaceMovesLittle(t *testing.T) {
	for _, shards := range []uint32{16, 64} {
		for n := 3; n <= 8; n++ {
			before := node.Place(shards, ids(n, "node"), 3)
			after := node.Place(shards, ids(n+1, "node"), 3)
			moves := 0
			for s := range before {
				for _, id := range after[s] {
					if !slices.Contains(before[s], id) {
						moves++
					}
				}
			}
			minimum := int(shards) * 3 / (n + 1)
			t.Logf("%d shards, %d→%d nodes: %d replicas move (at least %d must)", shards, n, n+1, moves, minimum)
			if moves > minimum*3/2+2 {
				t.Fatalf("%d shards, %d→%d nodes: %d replicas move, want at most %d", shards, n, n+1, moves, minimum*3/2+2)
			}
		}
	}
}

// TestLeadersEven: with 16 shards and 3 voters each (the defaults) on 3 to
// 9 nodes, for many member sets, every shard's preferred leader is one of
// its voters and every node leads ⌊S/N⌋ or ⌈S/N⌉ shards.
func TestLeadersEven(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(t *testing.T, shards uint32, nodes []string) {
		t.Helper()
		p := node.Place(shards, nodes, 3)
		leaders := p.Leaders()
		count := map[string]int{}
		for s, l := range leaders {
			if !slices.Contains(p[s], l) {
				t.Fatalf("shard %d: leader %q is not a voter %v", s, l, p[s])
			}
			count[l]++
		}
		lo, hi := int(shards)/len(nodes), (int(shards)+len(nodes)-1)/len(nodes)
		for _, id := range nodes {
			if c := count[id]; c < lo || c > hi {
				t.Fatalf("%d shards over %v: %s leads %d, want %d..%d (%v)", shards, nodes, id, c, lo, hi, count)
			}
		}
		if !slices.Equal(leaders, p.Leaders()) {
			t.Fatal("Leaders is not deterministic")
		}
	}
	for n := 3; n <= 9; n++ {
		check(t, 16, ids(n, "node"))
		for trial := 0; trial < 500; trial++ {
			nodes := make([]string, n)
			for i := range nodes {
				nodes[i] = fmt.Sprintf("host-%x", rng.Uint32())
			}
			check(t, 16, nodes)
		}
	}
}

// TestLeadersOptimal compares Leaders with every possible choice on small
// placements: no choice spreads leaderships more evenly (smaller sum of
// squared counts, hence also a smaller maximum).
func TestLeadersOptimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 300; trial++ {
		shards := uint32(1 + rng.IntN(7))
		nodes := ids(1+rng.IntN(5), fmt.Sprintf("t%d-", trial))
		p := node.Place(shards, nodes, 1+rng.IntN(3))
		got := sumSquares(p.Leaders())
		best := -1
		choice := make([]string, len(p))
		var walk func(s int)
		walk = func(s int) {
			if s == len(p) {
				if v := sumSquares(choice); best < 0 || v < best {
					best = v
				}
				return
			}
			for _, id := range p[s] {
				choice[s] = id
				walk(s + 1)
			}
		}
		walk(0)
		if got != best {
			t.Fatalf("placement %v: leaders %v have sum of squares %d, the best is %d", p, p.Leaders(), got, best)
		}
	}
}

func sumSquares(leaders []string) int {
	count := map[string]int{}
	for _, l := range leaders {
		count[l]++
	}
	sum := 0
	for _, c := range count {
		sum += c * c
	}
	return sum
}

// BenchmarkPlace: placement is recomputed whenever membership changes.
func BenchmarkPlace(b *testing.B) {
	for _, tc := range []struct {
		shards uint32
		nodes  int
	}{{16, 5}, {256, 12}, {4096, 30}} {
		b.Run(fmt.Sprintf("%dshards-%dnodes", tc.shards, tc.nodes), func(b *testing.B) {
			nodes := ids(tc.nodes, "node")
			for b.Loop() {
				node.Place(tc.shards, nodes, 3).Leaders()
			}
		})
	}
}
