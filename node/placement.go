package node

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"sort"
)

// Placement is where a cluster's shards should live: for every shard, the
// ids of the nodes that should be its voters, best first. It is a pure
// function of the shard count, the placeable nodes and the replication
// factor, so every node that sees the same members computes the same one.
type Placement [][]string

// Place computes the placement of shards shards over nodes. Each shard
// ranks every node by rendezvous (highest random weight) hashing of
// (shard, node id) and takes its first min(replication, len(nodes)); then
// replicas move from the most loaded nodes to the least loaded, each to the
// best-ranked node the shard does not have yet, until every node holds
// ⌊S·R/N⌋ or ⌈S·R/N⌉ replicas. Rendezvous alone moves the fewest replicas
// when a node joins or leaves but, with tens of shards, can leave one node
// twice as loaded as another; the balancing costs a few more moves (about
// a fifth more than the minimum when growing, with 16 shards). Each shard's
// voters are listed by rank. The order of nodes does not matter; duplicate
// ids count once.
func Place(shards uint32, nodes []string, replication int) Placement {
	ids := slices.Clone(nodes)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	r := min(max(replication, 0), len(ids))
	p := make(Placement, shards)
	rank := make([][]string, shards) // each shard's nodes, best first
	type scored struct {
		id    string
		score uint64
	}
	byScore := make([]scored, len(ids))
	for s := range shards {
		for i, id := range ids {
			byScore[i] = scored{id, score(s, id)}
		}
		sort.SliceStable(byScore, func(i, j int) bool { return byScore[i].score > byScore[j].score })
		rank[s] = make([]string, len(ids))
		for i, e := range byScore {
			rank[s][i] = e.id
		}
		p[s] = slices.Clone(rank[s][:r])
	}
	if r > 0 {
		balance(p, rank, ids)
	}
	for s := range p {
		slices.SortFunc(p[s], func(a, b string) int {
			return slices.Index(rank[s], a) - slices.Index(rank[s], b)
		})
	}
	return p
}

// balance moves replicas until no node holds two more than another. Each
// move follows the shortest chain from a most loaded node u to a node
// holding at most load(u)-2: u's replica of a shard goes to a node the
// shard lacks (best ranked first), which may hand one of its own on, and
// so on. Every move lowers the sum of squared loads, so it ends; and while
// two loads differ by two or more, some shard holds the larger and not the
// smaller, so it ends balanced.
func balance(p Placement, rank [][]string, ids []string) {
	load := p.Count()
	for {
		holds := map[string][]int{} // shards each node holds, ascending
		for s, vs := range p {
			for _, id := range vs {
				holds[id] = append(holds[id], s)
			}
		}
		order := slices.Clone(ids)
		slices.SortStableFunc(order, func(a, b string) int { return load[b] - load[a] })
		var path []move
		for _, u := range order {
			if load[u]-load[order[len(order)-1]] < 2 {
				break // no node is two below u
			}
			path = shortestChain(u, load, func(a string, visit func(move) bool) bool {
				for _, s := range holds[a] {
					for _, b := range rank[s] {
						if !slices.Contains(p[s], b) && visit(move{shard: s, from: a, to: b}) {
							return true
						}
					}
				}
				return false
			})
			if path != nil {
				break
			}
		}
		if path == nil {
			return
		}
		for _, m := range path {
			p[m.shard][slices.Index(p[m.shard], m.from)] = m.to
			load[m.from]--
			load[m.to]++
		}
	}
}

// shortestChain searches breadth first from node u, along the moves that
// next offers from each node, for the nearest node whose load is at most
// load[u]-2, and returns the moves leading there (nil if none). next calls
// visit for each move out of a node and stops when visit returns true.
func shortestChain(u string, load map[string]int, next func(a string, visit func(move) bool) bool) []move {
	seen := map[string]move{u: {}}
	queue := []string{u}
	found := ""
	for len(queue) > 0 && found == "" {
		a := queue[0]
		queue = queue[1:]
		next(a, func(m move) bool {
			if _, ok := seen[m.to]; ok {
				return false
			}
			seen[m.to] = m
			if load[m.to] <= load[u]-2 {
				found = m.to
				return true
			}
			queue = append(queue, m.to)
			return false
		})
	}
	if found == "" {
		return nil
	}
	var path []move
	for n := found; n != u; n = seen[n].from {
		path = append(path, seen[n])
	}
	slices.Reverse(path)
	return path
}

// score is the rendezvous weight of a node for a shard: FNV-1a over the
// shard (4 bytes, big endian) and the id, then a 64-bit finalizer so that
// ids differing in one character spread over the whole range.
func score(shard uint32, id string) uint64 {
	h := fnv.New64a()
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], shard)
	h.Write(b[:])
	h.Write([]byte(id))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Has reports whether node id is among shard s's placed voters.
func (p Placement) Has(s uint32, id string) bool {
	return int(s) < len(p) && slices.Contains(p[s], id)
}

// Count returns how many shards place a voter on each node.
func (p Placement) Count() map[string]int {
	out := map[string]int{}
	for _, vs := range p {
		for _, id := range vs {
			out[id]++
		}
	}
	return out
}

// Leaders picks each shard's preferred leader among its placed voters so
// that leaderships spread evenly: every node that is a voter somewhere leads
// ⌊S/N⌋ or ⌈S/N⌉ shards whenever the placement allows it. It starts from
// each shard's first-ranked voter and moves leaderships along chains
// (a node gives a shard to another voter of it, which may give one of its
// own to a third, ...) from the most loaded nodes to the least loaded, until
// no chain lowers the spread. Deterministic: ties go to the smaller id and
// the lower shard. A shard without voters has leader "".
func (p Placement) Leaders() []string {
	leader := make([]string, len(p))
	count := map[string]int{}
	var nodes []string
	for s, vs := range p {
		for _, id := range vs {
			if _, ok := count[id]; !ok {
				count[id] = 0
				nodes = append(nodes, id)
			}
		}
		if len(vs) > 0 {
			leader[s] = vs[0]
			count[vs[0]]++
		}
	}
	slices.Sort(nodes)
	for {
		leads := map[string][]int{} // shards each node leads, ascending
		for s, l := range leader {
			if l != "" {
				leads[l] = append(leads[l], s)
			}
		}
		order := slices.Clone(nodes)
		slices.SortStableFunc(order, func(a, b string) int { return count[b] - count[a] })
		var path []move
		for _, u := range order {
			if count[u]-count[order[len(order)-1]] < 2 {
				break // no node is two below u
			}
			path = shortestChain(u, count, func(a string, visit func(move) bool) bool {
				for _, s := range leads[a] {
					for _, b := range p[s] {
						if b != a && visit(move{shard: s, from: a, to: b}) {
							return true
						}
					}
				}
				return false
			})
			if path != nil {
				break
			}
		}
		if path == nil {
			break
		}
		for _, m := range path {
			leader[m.shard] = m.to
			count[m.from]--
			count[m.to]++
		}
	}
	return leader
}

// move hands a shard's leadership (or replica) from node from to node to.
type move struct {
	shard    int
	from, to string
}
