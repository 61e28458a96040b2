package fsm

import (
	"encoding/binary"

	"github.com/google/btree"
)

// agentIndex orders the eligible agents of one group for one question type,
// best first. Only agents that are online and below their limit are in it,
// so choosing an agent is Min: O(log n), never a scan.
type agentIndex struct {
	tree *btree.BTreeG[agentKey]
}

type agentKey struct {
	score int64
	pre   uint64 // idPrefix(id): orders as id does, without reading it
	id    string
	a     *agent
}

func agentLess(x, y agentKey) bool {
	if x.score != y.score {
		return x.score > y.score // higher score first
	}
	if x.pre != y.pre { // deterministic tie-break by id
		return x.pre < y.pre
	}
	return x.id < y.id
}

// idPrefix is the id's first 8 bytes, big-endian, zero-padded. Comparing
// prefixes, then ids when the prefixes are equal, orders as comparing ids
// does (a shorter id pads with zero bytes, which sort first); in the
// index, where many agents tie on score, most comparisons then stop at the
// prefix instead of following two string pointers.
func idPrefix(id string) uint64 {
	var b [8]byte
	copy(b[:], id)
	return binary.BigEndian.Uint64(b[:])
}

// indexEntry is one index membership of an agent: its key, and the part of
// its score that does not depend on the agent's load (loadChanged).
type indexEntry struct {
	idx  *agentIndex
	key  agentKey
	base int64
}

func newAgentIndex() *agentIndex {
	return &agentIndex{tree: btree.NewG(btreeDegree, agentLess)}
}

// best returns the best eligible agent other than skip, or nil.
func (x *agentIndex) best(skip *agent) *agent {
	var found *agent
	x.tree.Ascend(func(k agentKey) bool {
		if k.a == skip {
			return true
		}
		found = k.a
		return false
	})
	return found
}

// score is an agent's score in group g for a question type: every part is
// scaled to 0..1000 and weighted by the merchant's integer weights, so all
// replicas compute the same number. It is baseScore plus loadScore.
func score(w *weights, a *agent, groupID, questionType string) int64 {
	return baseScore(w, a, groupID, questionType) + loadScore(w, a)
}

// baseScore is the part of the score that does not depend on the load.
func baseScore(w *weights, a *agent, groupID, questionType string) int64 {
	skill := int64(a.skill(groupID, questionType)) * 10
	rating := int64(a.cfg.Rating) * 2
	weight := int64(a.cfg.Weight) * 10
	return w.skill*skill + w.rating*rating + w.weight*weight
}

// loadScore is the part of the score that depends on the load: headroom.
func loadScore(w *weights, a *agent) int64 {
	var headroom int64
	if a.limit > 0 && a.load < a.limit {
		headroom = int64(a.limit-a.load) * 1000 / int64(a.limit)
	}
	return w.headroom * headroom
}

// unindex takes the agent out of every index and its capacity out of its
// groups. Call it before changing the agent's groups.
func (m *merchant) unindex(a *agent) {
	for _, e := range a.indexed {
		e.idx.tree.Delete(e.key)
	}
	a.indexed = a.indexed[:0]
	for _, ag := range a.cfg.Groups {
		gid := ag.GroupId
		if g := m.groups[gid]; g != nil {
			g.capacity -= uint64(a.counted)
		}
	}
	a.counted = 0
}

// reindex puts the agent where its status, load, limit and skills say:
// taken out of every index, then inserted in each index of each of its
// groups if it is eligible; and keeps its groups' capacity up to date.
// Cost: O(groups x question types x log n).
func (m *merchant) reindex(a *agent) {
	m.unindex(a)
	a.counted = a.capacity()
	eligible := a.eligible()
	for _, ag := range a.cfg.Groups {
		gid := ag.GroupId
		g := m.groups[gid]
		if g == nil {
			continue
		}
		g.capacity += uint64(a.counted)
		if !eligible {
			continue
		}
		for qt, idx := range g.indexes {
			base := baseScore(&m.w, a, gid, qt)
			k := agentKey{score: base + loadScore(&m.w, a), pre: idPrefix(a.id), id: a.id, a: a}
			idx.tree.ReplaceOrInsert(k)
			a.indexed = append(a.indexed, indexEntry{idx: idx, key: k, base: base})
		}
	}
}

// loadChanged puts the agent where its new load says, after an assignment
// or a release (load changed by one; nothing else about the agent, its
// groups or the merchant's weights changed). wasEligible is eligible()
// before the change. While the agent stays eligible only its keys move,
// from their kept base scores; otherwise it is reindexed. The indexes end
// as reindex would leave them.
func (m *merchant) loadChanged(a *agent, wasEligible bool) {
	if !wasEligible || !a.eligible() {
		m.reindex(a)
		return
	}
	load := loadScore(&m.w, a)
	for i := range a.indexed {
		e := &a.indexed[i]
		e.idx.tree.Delete(e.key)
		e.key.score = e.base + load
		e.idx.tree.ReplaceOrInsert(e.key)
	}
}

// rebuildIndexes recomputes a group's set of question-type indexes (one per
// question type any member has its own skill for, plus the default) and
// re-inserts every member. Used on configuration changes only.
func (m *merchant) rebuildIndexes(g *group) {
	qts := map[string]bool{"": true}
	for _, a := range g.members {
		for _, q := range a.groups[g.id].QuestionSkills {
			qts[q.QuestionType] = true
		}
	}
	for qt := range g.indexes {
		if !qts[qt] {
			delete(g.indexes, qt)
		}
	}
	for qt := range qts {
		if g.indexes[qt] == nil {
			g.indexes[qt] = newAgentIndex()
		}
	}
	for _, id := range sortedKeys(g.members) {
		m.reindex(g.members[id])
	}
}
