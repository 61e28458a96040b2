package transport

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/internal/hclogslog"
)

func appendReq(term, prev, commit uint64, entries ...uint64) *raft.AppendEntriesRequest {
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("leader")}, Term: term,
		PrevLogEntry: prev, PrevLogTerm: term, LeaderCommitIndex: commit}
	for _, i := range entries {
		req.Entries = append(req.Entries, &raft.Log{Index: i, Term: term})
	}
	return req
}

func ok(term uint64) *raft.AppendEntriesResponse {
	return &raft.AppendEntriesResponse{Term: term, Success: true}
}

// TestCommitStamps: a heartbeat carries the commit index only to a quiet
// follower, never beyond what that follower acknowledged in the heartbeat's
// term, and only when it teaches the follower something.
func TestCommitStamps(t *testing.T) {
	var c commitStamps
	commit := uint64(0)
	beat := heartbeat(2)
	if c.stamp("f", beat) != nil {
		t.Fatal("stamped without a commit source")
	}
	c.commit = func() uint64 { return commit }
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	quiet := func() { now = now.Add(stampQuiet) }

	// The follower acknowledges entries 1..10 in term 2 (told commit 0),
	// and the leader commits up to 12 (entries 11, 12 acknowledged by
	// another follower only).
	req := appendReq(2, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	c.sending("f", req)
	c.answered("f", req, ok(2))
	commit = 12
	now = now.Add(stampQuiet - time.Millisecond)
	if c.stamp("f", beat) != nil {
		t.Fatal("stamped a heartbeat right after an append: appends carry the index")
	}
	now = now.Add(time.Millisecond)
	s := c.stamp("f", beat)
	if s == nil || s.LeaderCommitIndex != 10 {
		t.Fatalf("stamp = %+v; want LeaderCommitIndex 10 (what f acknowledged, not the leader's 12)", s)
	}
	if beat.LeaderCommitIndex != 0 {
		t.Fatal("stamp changed raft's own heartbeat request")
	}
	c.told("f", s, ok(2))
	if s := c.stamp("f", beat); s != nil {
		t.Fatalf("stamped again with nothing new: %+v", s)
	}

	// A failed or stale answer teaches nothing.
	req = appendReq(2, 10, 12, 11, 12)
	c.sending("f", req)
	c.answered("f", req, &raft.AppendEntriesResponse{Term: 2})
	quiet()
	if s := c.stamp("f", beat); s != nil {
		t.Fatalf("stamped past an unacknowledged append: %+v", s)
	}
	c.sending("f", req)
	c.answered("f", req, ok(3))
	quiet()
	if s := c.stamp("f", beat); s != nil {
		t.Fatalf("stamped after an answer from another term: %+v", s)
	}

	// An idle append that carried the commit index tells it.
	c.sending("f", req)
	c.answered("f", req, ok(2))
	idle := appendReq(2, 12, 12)
	c.sending("f", idle)
	c.answered("f", idle, ok(2))
	quiet()
	if s := c.stamp("f", beat); s != nil {
		t.Fatalf("stamped what the idle append told: %+v", s)
	}

	// A new term starts from nothing: what f acknowledged in term 2 says
	// nothing about its log under the leader of term 3.
	commit = 20
	if s := c.stamp("f", heartbeat(3)); s != nil {
		t.Fatalf("stamped in a new term before any acknowledgement in it: %+v", s)
	}
	if s := c.stamp("g", beat); s != nil {
		t.Fatalf("stamped for a follower never heard from: %+v", s)
	}
}

// TestIdleFollowersLearnCommit runs one Raft group of three voters on our
// Transport with a CommitTimeout of an hour, so raft itself never tells an
// idle follower the commit index; the heartbeats must.
func TestIdleFollowersLearnCommit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stamp bool
	}{{"stamped", true}, {"raft alone", false}} {
		t.Run(tc.name, func(t *testing.T) {
			logger := testLogger(t, slog.LevelWarn)
			var servers []raft.Server
			var muxes []*Mux
			for i := range 3 {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				m, err := NewMux(ln, nil, WithLogger(logger))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { m.Close() })
				muxes = append(muxes, m)
				servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint("n", i)), Address: raft.ServerAddress(m.Addr().String())})
			}
			rafts := make([]*raft.Raft, 3)
			fsms := make([]*countFSM, 3)
			for i, m := range muxes {
				tr := mustTransport(t, m, 1, 2*time.Millisecond)
				conf := raft.DefaultConfig()
				conf.LocalID = servers[i].ID
				conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
				conf.CommitTimeout = time.Hour
				conf.Logger = hclogslog.New(logger)
				logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
				if err := raft.BootstrapCluster(conf, logs, logs, snaps, tr, raft.Configuration{Servers: servers}); err != nil {
					t.Fatal(err)
				}
				fsms[i] = newCountFSM()
				r, err := raft.NewRaft(conf, fsms[i], logs, logs, snaps, tr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Shutdown().Error() })
				if tc.stamp {
					tr.SetCommitIndex(r.CommitIndex)
				}
				rafts[i] = r
			}
			var leader *raft.Raft
			eventually(t, 5*time.Second, func() error {
				for _, r := range rafts {
					if r.State() == raft.Leader {
						leader = r
						return nil
					}
				}
				return fmt.Errorf("no leader")
			})
			want := []string{"a", "b", "c"}
			for _, cmd := range want {
				if err := leader.Apply([]byte(cmd), 2*time.Second).Error(); err != nil {
					t.Fatal(err)
				}
			}
			applied := func() error {
				for i, f := range fsms {
					if got := f.Applied(); !slices.Equal(got, want) {
						return fmt.Errorf("replica %d applied %q, want %q", i, got, want)
					}
				}
				return nil
			}
			if tc.stamp {
				eventually(t, 2*time.Second, applied)
				return
			}
			// The control: without the stamps, a follower never learns that
			// the last entry committed, which is what makes the test above
			// mean something.
			time.Sleep(500 * time.Millisecond)
			if applied() == nil {
				t.Fatal("followers applied the last entry with no idle append and no stamped heartbeat: the test above proves nothing")
			}
		})
	}
}
