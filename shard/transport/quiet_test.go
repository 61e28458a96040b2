package transport

import (
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/internal/hclogslog"
	"github.com/hashicorp/raft"
)

// Quiet-shard tests run real rafts over Muxes with quiet beats every
// quietEvery and a heartbeat timeout five times that, as the node sets it.
const (
	quietEvery = 40 * time.Millisecond
	quietHB    = 5 * quietEvery
)

type quietNode struct {
	id    raft.ServerID
	mux   *Mux
	rafts []*raft.Raft
	trans []*Transport
	fsms  []*countFSM
	logs  []*raft.InmemStore
	snaps []*raft.InmemSnapshotStore
	down  []bool // shard shut down by the test
}

type quietCluster struct {
	t       *testing.T
	logger  *slog.Logger
	nodes   []*quietNode
	shards  int
	servers []raft.Server
}

// newQuietCluster starts n nodes with a replica of each of shards on every
// one; quiet turns quiet shards on.
func newQuietCluster(t *testing.T, n, shards int, quiet bool) *quietCluster {
	t.Helper()
	logger := testLogger(t, slog.LevelInfo)
	c := &quietCluster{t: t, logger: logger, shards: shards}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		id := raft.ServerID(fmt.Sprintf("node%d", i))
		opts := []Option{WithLogger(logger.With("node", id))}
		if quiet {
			opts = append(opts, WithQuiet(quietEvery))
		}
		m, err := NewMux(ln, nil, opts...)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, &quietNode{id: id, mux: m, rafts: make([]*raft.Raft, shards),
			trans: make([]*Transport, shards), fsms: make([]*countFSM, shards), down: make([]bool, shards),
			logs: make([]*raft.InmemStore, shards), snaps: make([]*raft.InmemSnapshotStore, shards)})
		c.servers = append(c.servers, raft.Server{Suffrage: raft.Voter, ID: id, Address: raft.ServerAddress(m.Addr().String())})
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			for s := range shards {
				c.stopShard(nd, s)
			}
			nd.mux.Close()
		}
	})
	for _, nd := range c.nodes {
		for s := range shards {
			nd.logs[s], nd.snaps[s] = raft.NewInmemStore(), raft.NewInmemSnapshotStore()
			c.startShard(nd, s, true)
		}
	}
	return c
}

// startShard opens nd's replica of shard s on its stores (bootstrapped
// first if boot), with a new FSM.
func (c *quietCluster) startShard(nd *quietNode, s int, boot bool) {
	t := c.t
	hlog := hclogslog.New(c.logger.With("node", nd.id, "shard", s))
	tr, err := nd.mux.Transport(uint32(s), TransportConfig{
		Net:            raft.NetworkTransportConfig{MaxPool: 2, Timeout: time.Second, Logger: hlog.Named("transport")},
		CoalesceWindow: quietHB / 25,
	})
	if err != nil {
		t.Fatal(err)
	}
	nd.trans[s] = tr
	conf := raft.DefaultConfig()
	conf.LocalID = nd.id
	conf.HeartbeatTimeout, conf.ElectionTimeout = quietHB, quietHB
	conf.LeaderLeaseTimeout = quietHB * 4 / 5
	conf.CommitTimeout = quietHB / 2
	conf.Logger = hlog.Named("raft")
	logs, snaps := nd.logs[s], nd.snaps[s]
	if boot {
		if err := raft.BootstrapCluster(conf, logs, logs, snaps, tr, raft.Configuration{Servers: c.servers}); err != nil {
			t.Fatal(err)
		}
	}
	nd.fsms[s] = newCountFSM()
	if nd.rafts[s], err = raft.NewRaft(conf, nd.fsms[s], logs, logs, snaps, tr); err != nil {
		t.Fatal(err)
	}
	nd.down[s] = false
}

// stopShard shuts down nd's replica of shard and its transport.
func (c *quietCluster) stopShard(nd *quietNode, s int) {
	if nd.down[s] {
		return
	}
	nd.down[s] = true
	nd.rafts[s].Shutdown().Error()
	nd.trans[s].Close()
}

// leader waits for exactly one live leader of shard and returns it.
func (c *quietCluster) leader(t *testing.T, s int, within time.Duration) *quietNode {
	t.Helper()
	var l *quietNode
	eventually(t, within, func() error {
		var ids []raft.ServerID
		l = nil
		for _, nd := range c.nodes {
			if !nd.down[s] && nd.rafts[s].State() == raft.Leader {
				l = nd
				ids = append(ids, nd.id)
			}
		}
		if len(ids) != 1 {
			return fmt.Errorf("shard %d: want one leader, have %v", s, ids)
		}
		return nil
	})
	return l
}

func (c *quietCluster) stats() (beats, quiet uint64) {
	for _, nd := range c.nodes {
		st := nd.mux.Stats()
		beats += st.BeatCalls
		quiet += st.QuietHeartbeats
	}
	return beats, quiet
}

// TestQuietShardsKeepLeaders: once idle, the leaders answer their
// heartbeats themselves — the coalesced heartbeats nearly stop — and still
// no follower starts an election over many heartbeat timeouts, writes
// commit on every replica and a leader confirms its leadership.
func TestQuietShardsKeepLeaders(t *testing.T) {
	c := newQuietCluster(t, 3, 2, true)
	leaders := make([]*quietNode, c.shards)
	for s := range c.shards {
		leaders[s] = c.leader(t, s, 5*time.Second)
	}
	eventually(t, 5*time.Second, func() error {
		if _, q := c.stats(); q < 20 {
			return fmt.Errorf("%d heartbeats answered quietly", q)
		}
		return nil
	})
	beats0, quiet0 := c.stats()
	time.Sleep(10 * quietHB)
	beats1, quiet1 := c.stats()
	sent, kept := beats1-beats0, quiet1-quiet0
	t.Logf("over %v: %d heartbeats answered at home, %d sent", 10*quietHB, kept, sent)
	if kept < 10*sent || kept < 50 {
		t.Errorf("over %v: %d heartbeats answered at home and %d sent; want most kept home", 10*quietHB, kept, sent)
	}
	for s := range c.shards {
		if l := c.leader(t, s, time.Second); l != leaders[s] {
			t.Errorf("shard %d: leader changed from %s to %s while idle", s, leaders[s].id, l.id)
		}
		for _, nd := range c.nodes {
			if nd.mux.Stats().QuietLeaves != 0 {
				t.Errorf("%s: a replica withdrew its promise while idle", nd.id)
			}
		}
		if err := leaders[s].rafts[s].VerifyLeader().Error(); err != nil {
			t.Errorf("shard %d: VerifyLeader: %v", s, err)
		}
		cmd := fmt.Sprintf("shard%d/quiet", s)
		if err := leaders[s].rafts[s].Apply([]byte(cmd), time.Second).Error(); err != nil {
			t.Fatalf("shard %d: Apply: %v", s, err)
		}
		eventually(t, 5*time.Second, func() error {
			for _, nd := range c.nodes {
				if got := nd.fsms[s].Applied(); len(got) != 1 || got[0] != cmd {
					return fmt.Errorf("shard %d on %s: applied %q", s, nd.id, got)
				}
			}
			return nil
		})
	}
}

// quietSettled waits until the leaders of every shard answered heartbeats
// at home for a while.
func (c *quietCluster) quietSettled(t *testing.T) {
	t.Helper()
	for s := range c.shards {
		c.leader(t, s, 5*time.Second)
	}
	eventually(t, 5*time.Second, func() error {
		if _, q := c.stats(); q < 20 {
			return fmt.Errorf("%d heartbeats answered quietly", q)
		}
		return nil
	})
}

// TestQuietLeaderStopsLeading: a leader node that stops leading a shard
// (its replica shut down) while its Mux lives and keeps beating for other
// shards must not keep that shard's followers fed: they elect a new leader
// within a few heartbeat timeouts, and the other shard keeps its leader.
func TestQuietLeaderStopsLeading(t *testing.T) {
	c := newQuietCluster(t, 3, 2, true)
	c.quietSettled(t)
	old := c.leader(t, 0, time.Second)
	var other *quietNode
	for i := range 10 {
		// Shard 1's leader must be a node whose Mux keeps beating: the
		// one that leads shard 0, or move leadership there.
		if other = c.leader(t, 1, 5*time.Second); other == old {
			break
		}
		if i == 9 {
			t.Skipf("shard 1 stayed away from %s", old.id)
		}
		other.rafts[1].LeadershipTransferToServer(old.id, raft.ServerAddress(old.mux.Addr().String())).Error()
	}
	c.quietSettled(t)
	start := time.Now()
	c.stopShard(old, 0)
	l := c.leader(t, 0, 10*quietHB)
	t.Logf("shard 0: %s leads %v after its leader %s stopped", l.id, time.Since(start).Round(time.Millisecond), old.id)
	if l2 := c.leader(t, 1, time.Second); l2 != old {
		t.Errorf("shard 1: leader moved from %s to %s", old.id, l2.id)
	}
}

// TestQuietLeaderGone: a leader node that goes away entirely is replaced,
// and writes commit on the nodes left.
func TestQuietLeaderGone(t *testing.T) {
	c := newQuietCluster(t, 3, 1, true)
	c.quietSettled(t)
	old := c.leader(t, 0, time.Second)
	start := time.Now()
	c.stopShard(old, 0)
	old.mux.Close()
	l := c.leader(t, 0, 10*quietHB)
	t.Logf("%s leads %v after %s went away", l.id, time.Since(start).Round(time.Millisecond), old.id)
	if err := l.rafts[0].Apply([]byte("after"), time.Second).Error(); err != nil {
		t.Fatalf("Apply on the new leader: %v", err)
	}
}

// TestQuietTransferWithdraws: leadership handed to a quiet follower
// (TimeoutNow) makes it withdraw its promise first; the old leader stops
// answering for it and the cluster goes on under the new leader.
func TestQuietTransferWithdraws(t *testing.T) {
	c := newQuietCluster(t, 3, 1, true)
	c.quietSettled(t)
	old := c.leader(t, 0, time.Second)
	if err := old.rafts[0].LeadershipTransfer().Error(); err != nil {
		t.Fatalf("LeadershipTransfer: %v", err)
	}
	l := c.leader(t, 0, 10*quietHB)
	if l == old {
		t.Fatalf("%s still leads", old.id)
	}
	if st := l.mux.Stats(); st.QuietLeaves == 0 {
		t.Errorf("%s took over without withdrawing its promise: %+v", l.id, st)
	}
	if err := l.rafts[0].Apply([]byte("after"), time.Second).Error(); err != nil {
		t.Fatalf("Apply on the new leader: %v", err)
	}
	if err := l.rafts[0].VerifyLeader().Error(); err != nil {
		t.Fatalf("VerifyLeader on the new leader: %v", err)
	}
}

// quietFixture is a follower node's side of one promise: a Mux with quiet
// shards, shard 1 answered by a fake raft, and a beats connection's state
// on which shard 1 was promised to leader:1 in term 5.
type quietFixture struct {
	f       *quietFollower
	qc      *quietConn
	granted time.Time // before the beat that the promise answered arrived
}

func newQuietFixture(t *testing.T) *quietFixture {
	t.Helper()
	m := newTestMux(t, WithQuiet(quietEvery))
	fakeRaft(t, mustTransport(t, m, 1, time.Millisecond), 1)
	f := m.quiet
	time.Sleep(time.Until(f.start.Add(f.lease))) // past a new node's first lease
	qc := &quietConn{out: &beatAnswers{ready: make(chan struct{}, 1), stop: make(chan struct{})}}
	f.record(1, "leader:1", heartbeat(5))
	granted := time.Now()
	f.serve(qc, 7, &quietBeat{From: "leader:1", Leads: []quietLead{{Shard: 1, Term: 5}, {Shard: 2, Term: 5}}})
	ans := takeAnswers(qc)
	if len(ans) != 1 || ans[0].seq != 7 {
		t.Fatalf("answers to the beat: %+v", ans)
	}
	if q := ans[0].resp.(*quietAnswer); q.N != 1 || len(q.Quiet) != 1 || q.Quiet[0] != (quietLead{Shard: 1, Term: 5}) {
		t.Fatalf("quiet answer %+v: want N 1 and shard 1 in term 5 only", q)
	}
	return &quietFixture{f: f, qc: qc, granted: granted}
}

func takeAnswers(qc *quietConn) []beatAnswer {
	qc.out.mu.Lock()
	defer qc.out.mu.Unlock()
	a := qc.out.answers
	qc.out.answers = nil
	return a
}

// leave starts withdrawing shard 1 for a term-6 RPC; the channel closes
// when it returns.
func (x *quietFixture) leave() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		x.f.leave(1, 6, false)
		close(done)
	}()
	return done
}

func returned(done <-chan struct{}, within time.Duration) bool {
	select {
	case <-done:
		return true
	case <-time.After(within):
		return false
	}
}

// TestQuietLeaveWaitsForAck: a replica that promised waits, before taking
// a newer term, until the leader acknowledged an answer without it — not
// the answer that listed it — and tells the leader at once.
func TestQuietLeaveWaitsForAck(t *testing.T) {
	x := newQuietFixture(t)
	done := x.leave()
	eventually(t, time.Second, func() error {
		if a := takeAnswers(x.qc); len(a) != 1 || a[0].seq != 0 || a[0].resp.(*quietAnswer).N != 2 || len(a[0].resp.(*quietAnswer).Quiet) != 0 {
			return fmt.Errorf("news to the leader: %+v", a)
		}
		return nil
	})
	x.f.serve(x.qc, 8, &quietBeat{From: "leader:1", Ack: 1}) // the answer that listed it
	if returned(done, quietEvery/2) {
		t.Fatal("left on the acknowledgement of the answer that listed the shard")
	}
	lapse := x.granted.Add(x.f.lease)
	early := time.Until(lapse) > x.f.lease/3 // time enough to tell the two apart
	x.f.serve(x.qc, 9, &quietBeat{From: "leader:1", Ack: 2})
	if !returned(done, time.Second) {
		t.Fatal("still waiting after the leader acknowledged the news")
	}
	if early && !time.Now().Before(lapse) {
		t.Fatal("waited for the promise to lapse although the leader acknowledged the news")
	}
	if st := x.f.m.Stats(); st.QuietLeaves != 1 || st.QuietWaits != 1 {
		t.Errorf("stats %+v: want 1 leave, 1 wait", st)
	}
	// Listed again only from a new leader's heartbeat in the newer term.
	takeAnswers(x.qc)
	x.f.serve(x.qc, 10, &quietBeat{From: "leader:1", Leads: []quietLead{{Shard: 1, Term: 5}}})
	if a := takeAnswers(x.qc); len(a) != 1 || len(a[0].resp.(*quietAnswer).Quiet) != 0 {
		t.Errorf("after leaving, answer %+v lists the shard again", a)
	}
}

// TestQuietLeaveWaitsForLapse: without an acknowledgement the wait lasts
// until a lease after the beat whose answer made the promise.
func TestQuietLeaveWaitsForLapse(t *testing.T) {
	x := newQuietFixture(t)
	<-x.leave()
	if d := time.Since(x.granted); d < x.f.lease {
		t.Fatalf("left %v after the promise, before its lease of %v", d, x.f.lease)
	}
}

// TestQuietLeaveOnClosedByLeader: a leader forgets a connection's promises
// before closing it, so its closing ends the wait.
func TestQuietLeaveOnClosedByLeader(t *testing.T) {
	x := newQuietFixture(t)
	done := x.leave()
	x.f.ended(x.qc, false) // closed here: the leader may still read the answers
	if returned(done, quietEvery/2) {
		t.Fatal("left when the follower itself dropped the connection")
	}
	lapse := x.granted.Add(x.f.lease)
	early := time.Until(lapse) > x.f.lease/3 // time enough to tell the two apart
	x.f.ended(x.qc, true)
	if !returned(done, time.Second) {
		t.Fatal("still waiting after the leader closed the connection")
	}
	if early && !time.Now().Before(lapse) {
		t.Fatal("waited for the promise to lapse although the leader closed the connection")
	}
}

// TestQuietPeerWithoutQuiet: a node with quiet shards heartbeating one
// without them sends every heartbeat, answered as before.
func TestQuietPeerWithoutQuiet(t *testing.T) {
	a, b := newTestMux(t, WithQuiet(quietEvery)), newTestMux(t)
	sender := mustTransport(t, a, 3, time.Millisecond)
	fakeRaft(t, mustTransport(t, b, 3, time.Millisecond), 3)
	target := raft.ServerAddress(b.Addr().String())
	for range 20 {
		var resp raft.AppendEntriesResponse
		if err := sender.AppendEntries("b", target, heartbeat(4), &resp); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		if !resp.Success || resp.LastLog != 3 {
			t.Fatalf("heartbeat answer %+v: want success from shard 3's handler", resp)
		}
		time.Sleep(quietEvery / 2)
	}
	if st := a.Stats(); st.QuietHeartbeats != 0 || st.BeatCalls != 20 {
		t.Errorf("stats %+v: want 20 heartbeats sent, none answered at home", st)
	}
}

// TestQuietFollowerReopened: a follower's replica closed and opened again
// while its leader answered the idle appends to it at home must learn the
// commit index anew — the old replica's answers do not speak for the new
// one — and apply what was committed.
func TestQuietFollowerReopened(t *testing.T) {
	c := newQuietCluster(t, 3, 1, true)
	l := c.leader(t, 0, 5*time.Second)
	want := commands(0, 0, 5)
	for _, cmd := range want {
		if err := l.rafts[0].Apply([]byte(cmd), time.Second).Error(); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	eventually(t, 5*time.Second, func() error {
		if st := l.mux.Stats(); st.QuietAppends < 4 {
			return fmt.Errorf("%d idle appends answered at home", st.QuietAppends)
		}
		return nil
	})
	var f *quietNode
	for _, nd := range c.nodes {
		if nd != l {
			f = nd
			break
		}
	}
	c.stopShard(f, 0)
	c.startShard(f, 0, false)
	eventually(t, 20*quietHB, func() error {
		if got := f.fsms[0].Applied(); len(got) != len(want) {
			return fmt.Errorf("reopened replica on %s applied %d of %d", f.id, len(got), len(want))
		}
		return nil
	})
	if c.leader(t, 0, time.Second) != l {
		t.Errorf("leader changed")
	}
}

// TestQuietPace: a heartbeat answered at home is held until the next quiet
// tick, and let go at once when a read hurries the shard (its leader
// confirms leadership with a heartbeat round) or the Transport closes.
func TestQuietPace(t *testing.T) {
	m := newTestMux(t, WithQuiet(time.Hour))
	tr := mustTransport(t, m, 1, time.Millisecond)
	paced := func() <-chan struct{} {
		done := make(chan struct{})
		go func() {
			tr.pace()
			close(done)
		}()
		return done
	}
	done := paced()
	if returned(done, 50*time.Millisecond) {
		t.Fatal("pace returned before the tick")
	}
	hurried := tr.Hurry()
	if !returned(done, 5*time.Second) {
		t.Fatal("pace still holds after Hurry")
	}
	if !returned(paced(), 5*time.Second) {
		t.Fatal("pace holds while the shard is hurried")
	}
	hurried()
	done = paced()
	if returned(done, 50*time.Millisecond) {
		t.Fatal("pace returned before the tick after the hurry ended")
	}
	tr.Close()
	if !returned(done, 5*time.Second) {
		t.Fatal("pace still holds after the Transport closed")
	}

	m2 := newTestMux(t, WithQuiet(20*time.Millisecond))
	tr2 := mustTransport(t, m2, 1, time.Millisecond)
	for range 3 {
		done := make(chan struct{})
		go func() {
			tr2.pace()
			close(done)
		}()
		if !returned(done, 5*time.Second) {
			t.Fatal("pace holds past the tick")
		}
	}
}
