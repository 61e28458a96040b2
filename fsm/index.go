package fsm

import (
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
	id    string
	a     *agent
}

func agentLess(x, y agentKey) bool {
	if x.score != y.score {
		return x.score > y.score // higher score first
	}
	return x.id < y.id // deterministic tie-break
}

type indexEntry struct {
	idx *agentIndex
	key agentKey
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
// replicas compute the same number.
func score(w *weights, a *agent, groupID, questionType string) int64 {
	skill := int64(a.skill(groupID, questionType)) * 10
	var headroom int64
	if a.limit > 0 && a.load < a.limit {
		headroom = int64(a.limit-a.load) * 1000 / int64(a.limit)
	}
	rating := int64(a.cfg.Rating) * 2
	weight := int64(a.cfg.Weight) * 10
	return w.skill*skill + w.headroom*headroom + w.rating*rating + w.weight*weight
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
			k := agentKey{score: score(&m.w, a, gid, qt), id: a.id, a: a}
			idx.tree.ReplaceOrInsert(k)
			a.indexed = append(a.indexed, indexEntry{idx: idx, key: k})
		}
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
