package node

import (
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
)

// config builds a configuration: ids prefixed with "~" are nonvoters; every
// server's address is "<id>:1".
func config(ids ...string) shard.Configuration {
	var c shard.Configuration
	for _, id := range ids {
		s := raft.Server{Suffrage: raft.Voter}
		if id[0] == '~' {
			id, s.Suffrage = id[1:], raft.Nonvoter
		}
		s.ID, s.Address = raft.ServerID(id), raft.ServerAddress(id+":1")
		c.Servers = append(c.Servers, s)
	}
	return c
}

func set(ids ...string) func(string) bool {
	return func(id string) bool { return slices.Contains(ids, id) }
}

// TestDecide walks the leader's decision table: one step at a time, new
// replicas as nonvoters, removal only with a caught-up majority left, the
// leader leaving last and handing its lead over first.
func TestDecide(t *testing.T) {
	all := []string{"a", "b", "c", "d", "e"}
	addrs := map[string]string{}
	for _, id := range all {
		addrs[id] = id + ":1"
	}
	base := func() shardState {
		return shardState{
			self: "a", want: []string{"a", "b", "c"}, preferred: "a",
			cfg: config("a", "b", "c"), addrs: addrs,
			alive: set(all...), removable: set(all...), caughtUp: set(all...), hasReplica: set(all...), settled: true,
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*shardState)
		want   action
	}{
		{"placed: nothing to do", func(*shardState) {}, action{}},
		{"new node placed: added as nonvoter", func(s *shardState) {
			s.want = []string{"a", "b", "d"}
		}, action{kind: actAddNonvoter, id: "d", addr: "d:1"}},
		{"new node without its replica open yet: wait", func(s *shardState) {
			s.want = []string{"a", "b", "d"}
			s.hasReplica = set("a", "b", "c")
		}, action{}},
		{"nonvoter behind: wait, remove nothing", func(s *shardState) {
			s.want = []string{"a", "b", "d"}
			s.cfg = config("a", "b", "c", "~d")
			s.caughtUp = set("a", "b", "c")
		}, action{}},
		{"nonvoter caught up: promoted", func(s *shardState) {
			s.want = []string{"a", "b", "d"}
			s.cfg = config("a", "b", "c", "~d")
		}, action{kind: actPromote, id: "d", addr: "d:1"}},
		{"nonvoter no longer placed: removed", func(s *shardState) {
			s.cfg = config("a", "b", "c", "~d")
		}, action{kind: actRemove, id: "d"}},
		{"replacement votes: old voter removed", func(s *shardState) {
			s.want = []string{"a", "b", "d"}
			s.cfg = config("a", "b", "c", "d")
		}, action{kind: actRemove, id: "c"}},
		{"dead voter removed before a live one", func(s *shardState) {
			s.want = []string{"a", "d"}
			s.cfg = config("a", "b", "c", "d")
			s.alive = set("a", "b", "d")
		}, action{kind: actRemove, id: "c"}},
		{"removal would leave no caught-up majority: wait", func(s *shardState) {
			s.want = []string{"a", "b", "d"}
			s.cfg = config("a", "b", "c", "d")
			s.caughtUp = set("a", "c")
		}, action{}},
		{"fewer live nodes than the replication: dead voter removed", func(s *shardState) {
			s.want = []string{"a", "b"}
			s.alive = set("a", "b")
			s.caughtUp = set("a", "b")
		}, action{kind: actRemove, id: "c"}},
		{"leader not placed: another extra voter goes first", func(s *shardState) {
			s.want, s.preferred = []string{"b", "c"}, "b"
			s.cfg = config("a", "b", "c", "d")
		}, action{kind: actRemove, id: "d"}},
		{"leader not placed: hands its lead to the preferred leader", func(s *shardState) {
			s.want, s.preferred = []string{"b", "c", "d"}, "c"
			s.cfg = config("a", "b", "c", "d")
		}, action{kind: actTransfer, id: "c"}},
		{"leader not placed, preferred behind: another caught-up voter", func(s *shardState) {
			s.want, s.preferred = []string{"b", "c", "d"}, "c"
			s.cfg = config("a", "b", "c", "d")
			s.caughtUp = set("a", "b", "d")
		}, action{kind: actTransfer, id: "b"}},
		{"leader not placed, nobody caught up: wait", func(s *shardState) {
			s.want, s.preferred = []string{"b", "c", "d"}, "c"
			s.cfg = config("a", "b", "c", "d")
			s.caughtUp = set("a")
		}, action{}},
		{"settled, preferred elsewhere: hand the lead over", func(s *shardState) {
			s.preferred = "b"
		}, action{kind: actTransfer, id: "b"}},
		{"not settled: keep the lead", func(s *shardState) {
			s.preferred, s.settled = "b", false
		}, action{}},
		{"preferred behind: keep the lead", func(s *shardState) {
			s.preferred = "b"
			s.caughtUp = set("a", "c")
		}, action{}},
		{"voter gossip knows too little about: kept", func(s *shardState) {
			s.want = []string{"a"}
			s.removable = set("a")
		}, action{}},
		{"only the voters gossip knows are removed", func(s *shardState) {
			s.want = []string{"a", "b"}
			s.cfg = config("a", "b", "c", "d")
			s.removable = set("a", "b", "d")
		}, action{kind: actRemove, id: "d"}},
		{"moved node: its address is updated first", func(s *shardState) {
			s.addrs = map[string]string{"a": "a:1", "b": "b:2", "c": "c:1"}
			s.want = []string{"a", "b", "d"}
		}, action{kind: actUpdateAddress, id: "b", addr: "b:2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := base()
			tc.change(&st)
			got := decide(st)
			got.why = ""
			if got != tc.want {
				t.Fatalf("decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestDecideConverges replays decide against a simulated shard, applying
// each change, from every start below to the placement: it always gets
// there, one change at a time, and never lets the caught-up voters drop
// below a majority.
func TestDecideConverges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start []string // configuration
		want  []string
		alive []string
	}{
		{"grow into a new node", []string{"a", "b", "c"}, []string{"a", "b", "d"}, []string{"a", "b", "c", "d"}},
		{"replace a dead node", []string{"a", "b", "c"}, []string{"a", "b", "d"}, []string{"a", "b", "d"}},
		{"drain the leader", []string{"a", "b", "c"}, []string{"b", "c", "d"}, []string{"a", "b", "c", "d"}},
		{"move everything", []string{"a", "b", "c"}, []string{"d", "e", "f"}, []string{"a", "b", "c", "d", "e", "f"}},
		{"shrink to live nodes", []string{"a", "b", "c"}, []string{"a", "b"}, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs := map[string]string{}
			for _, id := range tc.alive {
				addrs[id] = id + ":1"
			}
			cfg := config(tc.start...)
			leader := "a"
			for step := 0; step < 20; step++ {
				st := shardState{
					self: leader, want: tc.want, preferred: tc.want[0], cfg: cfg, addrs: addrs,
					alive: set(tc.alive...), removable: func(string) bool { return true },
					caughtUp: set(tc.alive...), hasReplica: set(tc.alive...), settled: true,
				}
				a := decide(st)
				switch a.kind {
				case actNone:
					if !slices.Equal(slices.Sorted(slices.Values(cfg.Voters())), slices.Sorted(slices.Values(tc.want))) || leader != tc.want[0] {
						t.Fatalf("stopped at voters %v nonvoters %v leader %s (%s), want voters %v led by %s",
							cfg.Voters(), cfg.Nonvoters(), leader, a.why, tc.want, tc.want[0])
					}
					return
				case actAddNonvoter:
					cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(a.id), Address: raft.ServerAddress(a.addr)})
				case actPromote:
					for i := range cfg.Servers {
						if string(cfg.Servers[i].ID) == a.id {
							cfg.Servers[i].Suffrage = raft.Voter
						}
					}
				case actRemove:
					cfg.Servers = slices.DeleteFunc(cfg.Servers, func(s raft.Server) bool { return string(s.ID) == a.id })
				case actTransfer:
					leader = a.id
				default:
					t.Fatalf("unexpected action %+v", a)
				}
				caught := 0
				for _, v := range cfg.Voters() {
					if slices.Contains(tc.alive, v) {
						caught++
					}
				}
				if caught < len(cfg.Voters())/2+1 {
					t.Fatalf("after %+v: voters %v, only %d alive", a, cfg.Voters(), caught)
				}
				if !slices.Contains(cfg.Voters(), leader) {
					t.Fatalf("after %+v: leader %s is not a voter %v", a, leader, cfg.Voters())
				}
			}
			t.Fatal("no convergence in 20 steps")
		})
	}
}

// TestCaughtUp: a replica has caught up once, in the leader's term, it has
// applied what the leader had committed when it last looked.
func TestCaughtUp(t *testing.T) {
	r := newReconciler(nil)
	si := func(term, applied uint64) *pb.ShardInfo { return &pb.ShardInfo{Term: term, AppliedIndex: applied} }
	steps := []struct {
		si           *pb.ShardInfo
		term, commit uint64
		want         bool
	}{
		{si(3, 100), 3, 100, false}, // first look: nothing to compare with
		{si(3, 100), 3, 120, true},  // has what was committed last time
		{si(3, 110), 3, 130, false}, // behind what was committed last time (120)
		{si(3, 130), 3, 140, true},
		{nil, 3, 150, false}, // did not answer
		{si(3, 150), 3, 160, true},
		{si(2, 160), 3, 170, false}, // has not heard from this leader
		{si(4, 170), 4, 180, false}, // new term: look again first
		{si(4, 180), 4, 190, true},
	}
	for i, st := range steps {
		if got := r.caughtUp(0, "b", st.si, st.term, st.commit); got != st.want {
			t.Fatalf("step %d: caughtUp(%v, term %d, commit %d) = %v, want %v", i, st.si, st.term, st.commit, got, st.want)
		}
	}
}
