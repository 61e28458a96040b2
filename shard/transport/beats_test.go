package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakeRaft answers a Transport's RPCs like a raft would, so that answers
// tell which path they took: heartbeats through the heartbeat handler
// (LastLog = shard), other AppendEntries through the consumer channel
// (LastLog = 1000 + shard).
func fakeRaft(t *testing.T, tr *Transport, shard uint32) {
	t.Helper()
	tr.SetHeartbeatHandler(func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: uint64(shard), Success: true}, nil)
	})
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case rpc := <-tr.Consumer():
				req, ok := rpc.Command.(*raft.AppendEntriesRequest)
				if !ok {
					rpc.Respond(nil, fmt.Errorf("unexpected %T", rpc.Command))
					continue
				}
				rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: 1000 + uint64(shard), Success: true}, nil)
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait() })
}

func mustTransport(t *testing.T, m *Mux, shard uint32, window time.Duration) *Transport {
	t.Helper()
	tr, err := m.Transport(shard, TransportConfig{
		Net:            raft.NetworkTransportConfig{MaxPool: 2, Timeout: 2 * time.Second},
		CoalesceWindow: window,
	})
	if err != nil {
		t.Fatalf("Transport(%d): %v", shard, err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func heartbeat(term uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("a"), Addr: []byte("leader:1")},
		Term:      term,
	}
}

func idleAppend(term uint64) *raft.AppendEntriesRequest {
	req := heartbeat(term)
	req.PrevLogEntry, req.PrevLogTerm, req.LeaderCommitIndex = 10, term, 10
	return req
}

// TestBeatsCoalesce sends heartbeats and idle appends of many shards at
// once and checks that each got its own shard's answer by the right path,
// and that the heartbeats travelled coalesced, in fewer writes than calls.
func TestBeatsCoalesce(t *testing.T) {
	a, b := newTestMux(t), newTestMux(t)
	const shards = 16
	senders := make([]*Transport, shards)
	for s := range uint32(shards) {
		senders[s] = mustTransport(t, a, s, 20*time.Millisecond)
		fakeRaft(t, mustTransport(t, b, s, 20*time.Millisecond), s)
	}
	target := raft.ServerAddress(b.Addr().String())
	var wg sync.WaitGroup
	errs := make(chan error, 4*shards)
	for round := range 4 {
		for s := range uint32(shards) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				term := uint64(round + 1)
				req, want := heartbeat(term), uint64(s)
				if round%2 == 1 {
					req, want = idleAppend(term), 1000+uint64(s)
				}
				var resp raft.AppendEntriesResponse
				if err := senders[s].AppendEntries("b", target, req, &resp); err != nil {
					errs <- fmt.Errorf("shard %d round %d: %w", s, round, err)
					return
				}
				if resp.LastLog != want || resp.Term != term || !resp.Success {
					errs <- fmt.Errorf("shard %d round %d: answer %+v, want LastLog %d, term %d, success", s, round, resp, want, term)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := a.Stats()
	if st.BeatCalls != 2*shards {
		t.Errorf("BeatCalls = %d, want %d (the heartbeats)", st.BeatCalls, 2*shards)
	}
	if st.BeatBatches == 0 || st.BeatBatches >= st.BeatCalls/2 {
		t.Errorf("BeatBatches = %d for %d calls: want them coalesced, at least two to a write", st.BeatBatches, st.BeatCalls)
	}
	t.Logf("%d calls in %d writes", st.BeatCalls, st.BeatBatches)
}

// TestBeatsEntriesAndNoWindowGoDirect: AppendEntries with entries, and every
// call of a Transport without a coalescing window, use the NetworkTransport.
func TestBeatsEntriesAndNoWindowGoDirect(t *testing.T) {
	a, b := newTestMux(t), newTestMux(t)
	fakeRaft(t, mustTransport(t, b, 1, time.Millisecond), 1)
	fakeRaft(t, mustTransport(t, b, 2, time.Millisecond), 2)
	target := raft.ServerAddress(b.Addr().String())

	withEntries := idleAppend(1)
	withEntries.Entries = []*raft.Log{{Index: 11, Term: 1, Type: raft.LogCommand, Data: []byte("x")}}
	var resp raft.AppendEntriesResponse
	if err := mustTransport(t, a, 1, time.Millisecond).AppendEntries("b", target, withEntries, &resp); err != nil || resp.LastLog != 1001 {
		t.Fatalf("append with entries: (%+v, %v), want LastLog 1001", resp, err)
	}
	if err := mustTransport(t, a, 2, 0).AppendEntries("b", target, heartbeat(1), &resp); err != nil || resp.LastLog != 2 {
		t.Fatalf("heartbeat without a window: (%+v, %v), want LastLog 2", resp, err)
	}
	if st := a.Stats(); st.BeatCalls != 0 {
		t.Errorf("BeatCalls = %d, want 0", st.BeatCalls)
	}
}

// TestBeatsHurry: a hurried heartbeat does not wait out the window.
func TestBeatsHurry(t *testing.T) {
	a, b := newTestMux(t), newTestMux(t)
	const window = 3 * time.Second
	fakeRaft(t, mustTransport(t, b, 1, window), 1)
	tr := mustTransport(t, a, 1, window)
	target := raft.ServerAddress(b.Addr().String())

	done := tr.Hurry()
	start := time.Now()
	var resp raft.AppendEntriesResponse
	if err := tr.AppendEntries("b", target, heartbeat(1), &resp); err != nil || resp.LastLog != 1 {
		t.Fatalf("hurried heartbeat: (%+v, %v)", resp, err)
	}
	if d := time.Since(start); d >= window {
		t.Errorf("hurried heartbeat took %v, the whole window", d)
	}
	done()
	start = time.Now()
	if err := tr.AppendEntries("b", target, heartbeat(1), &resp); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < window {
		t.Errorf("heartbeat after Hurry ended took %v, want it to wait the %v window", d, window)
	}
}

// TestBeatsUnknownShard: a shard the peer does not serve, or an RPC other
// than a heartbeat, gets an error saying so, and the connection keeps
// serving the others.
func TestBeatsUnknownShard(t *testing.T) {
	a, b := newTestMux(t), newTestMux(t)
	fakeRaft(t, mustTransport(t, b, 1, time.Millisecond), 1)
	target := raft.ServerAddress(b.Addr().String())
	var resp raft.AppendEntriesResponse
	err := mustTransport(t, a, 7, time.Millisecond).AppendEntries("b", target, heartbeat(1), &resp)
	if err == nil || !strings.Contains(err.Error(), "shard 7 is not served") {
		t.Fatalf("heartbeat to an unserved shard: %v, want an error naming shard 7", err)
	}
	err = a.beat(1, target, idleAppend(1), &resp, 0, time.Second)
	if err == nil || !strings.Contains(err.Error(), "only heartbeats") {
		t.Fatalf("AppendEntries other than a heartbeat sent coalesced: %v, want it refused", err)
	}
	if err := mustTransport(t, a, 1, time.Millisecond).AppendEntries("b", target, heartbeat(1), &resp); err != nil || resp.LastLog != 1 {
		t.Fatalf("heartbeat to a served shard after that: (%+v, %v)", resp, err)
	}
}

// TestBeatsPeerWithoutSupport: a peer that closes coalesced-RPC connections
// unanswered (a version before them) still gets every call, one by one.
func TestBeatsPeerWithoutSupport(t *testing.T) {
	a, b := newTestMux(t), newTestMux(t)
	fakeRaft(t, mustTransport(t, b, 1, time.Millisecond), 1)
	old := oldPeer(t, b)
	tr := mustTransport(t, a, 1, time.Millisecond)
	for i := range 3 {
		var resp raft.AppendEntriesResponse
		if err := tr.AppendEntries("b", old, heartbeat(1), &resp); err != nil || resp.LastLog != 1 {
			t.Fatalf("call %d: (%+v, %v), want it answered by the shard", i, resp, err)
		}
	}
	if st := a.Stats(); st.BeatCalls > 1 {
		t.Errorf("BeatCalls = %d: want at most the first call tried coalesced", st.BeatCalls)
	}
}

// oldPeer returns the address of a proxy to m that closes connections
// opening with headerBeats, as a Mux that does not know it does.
func oldPeer(t *testing.T, m *Mux) raft.ServerAddress {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				var first [1]byte
				if _, err := io.ReadFull(c, first[:]); err != nil || first[0] == headerBeats {
					return
				}
				up, err := net.Dial("tcp", m.Addr().String())
				if err != nil {
					return
				}
				defer up.Close()
				up.Write(first[:])
				go func() { io.Copy(c, up); c.Close() }()
				io.Copy(up, c)
			}()
		}
	}()
	return raft.ServerAddress(ln.Addr().String())
}

// TestBeatsSilentPeer: a call to a peer that never answers fails within the
// transport timeout, and is counted.
func TestBeatsSilentPeer(t *testing.T) {
	a := newTestMux(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer conns.Done(); io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	tr, err := a.Transport(1, TransportConfig{
		Net:            raft.NetworkTransportConfig{MaxPool: 1, Timeout: 300 * time.Millisecond},
		CoalesceWindow: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var resp raft.AppendEntriesResponse
	start := time.Now()
	err = tr.AppendEntries("x", raft.ServerAddress(ln.Addr().String()), heartbeat(1), &resp)
	if err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("call to a silent peer: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("call to a silent peer took %v, timeout 300ms", d)
	}
	if st := a.Stats(); st.BeatTimeouts != 1 {
		t.Errorf("BeatTimeouts = %d, want 1", st.BeatTimeouts)
	}
}

// TestBeatsMuxCloseFailsCalls: closing the Mux fails waiting calls and
// leaves no goroutine behind.
func TestBeatsMuxCloseFailsCalls(t *testing.T) {
	t.Cleanup(checkNoLeaks(t)) // registered first, runs last
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewMux(ln, nil, WithLogger(testLogger(t, 0)))
	if err != nil {
		t.Fatal(err)
	}
	b := newTestMux(t)
	fakeRaft(t, mustTransport(t, b, 1, time.Millisecond), 1)
	tr, err := a.Transport(1, TransportConfig{Net: raft.NetworkTransportConfig{MaxPool: 1, Timeout: 5 * time.Second}, CoalesceWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	target := raft.ServerAddress(b.Addr().String())
	// One call answered, so a connection and its reader exist.
	hurried := tr.Hurry()
	if err := tr.AppendEntries("b", target, heartbeat(1), &raft.AppendEntriesResponse{}); err != nil {
		t.Fatal(err)
	}
	hurried()
	errc := make(chan error, 1)
	go func() { errc <- tr.AppendEntries("b", target, heartbeat(1), &raft.AppendEntriesResponse{}) }()
	time.Sleep(50 * time.Millisecond) // queued, waiting out its hour
	a.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("call waiting when the Mux closed: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call waiting when the Mux closed: still waiting after 5s")
	}
}

// TestBeatsNewTermDoesNotBlockOthers: a heartbeat bringing a new term (raft
// persists it before answering, an fsync) does not hold up other shards'
// heartbeats on the same connection.
func TestBeatsNewTermDoesNotBlockOthers(t *testing.T) {
	a, b := newTestMux(t), newTestMux(t)
	release := make(chan struct{})
	slow := mustTransport(t, b, 1, time.Millisecond)
	slow.SetHeartbeatHandler(func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		if req.Term == 5 {
			<-release // persisting the new term
		}
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: 1, Success: true}, nil)
	})
	fakeRaft(t, mustTransport(t, b, 2, time.Millisecond), 2)
	target := raft.ServerAddress(b.Addr().String())
	s1, s2 := mustTransport(t, a, 1, time.Millisecond), mustTransport(t, a, 2, time.Millisecond)

	var resp raft.AppendEntriesResponse
	if err := s1.AppendEntries("b", target, heartbeat(4), &resp); err != nil || resp.LastLog != 1 {
		t.Fatalf("shard 1, term 4: (%+v, %v)", resp, err)
	}
	slowDone := make(chan error, 1)
	go func() { slowDone <- s1.AppendEntries("b", target, heartbeat(5), &raft.AppendEntriesResponse{}) }()
	time.Sleep(20 * time.Millisecond) // shard 1's new term is being persisted
	if err := s2.AppendEntries("b", target, heartbeat(5), &resp); err != nil || resp.LastLog != 2 {
		t.Fatalf("shard 2 while shard 1 persists a term: (%+v, %v)", resp, err)
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Fatalf("shard 1, term 5: %v", err)
	}
}

// TestBeatsIdlePeerRetired: a peer sender in use stays; one unused for
// peerIdle is retired (out of the Mux's map, counted),
// a caller still holding it is told to take a new one, and the next call
// to the address starts a new sender that works.
func TestBeatsIdlePeerRetired(t *testing.T) {
	a, b := newTestMux(t), newTestMux(t)
	// Before any sender starts. Long enough that a heartbeat slowed by a
	// loaded machine (-race, CI) does not leave a gap of peerIdle in use.
	a.peerIdle = 400 * time.Millisecond
	tr := mustTransport(t, a, 1, time.Millisecond)
	fakeRaft(t, mustTransport(t, b, 1, time.Millisecond), 1)
	target := raft.ServerAddress(b.Addr().String())
	beat := func() {
		t.Helper()
		var resp raft.AppendEntriesResponse
		if err := tr.AppendEntries("b", target, heartbeat(1), &resp); err != nil || resp.LastLog != 1 {
			t.Fatalf("heartbeat: %v (answer %+v)", err, resp)
		}
	}
	senders := func() int {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.beatPeers)
	}
	// In use for three idle periods: kept.
	for end := time.Now().Add(3 * a.peerIdle); time.Now().Before(end); time.Sleep(a.peerIdle / 5) {
		beat()
	}
	if st := a.Stats(); st.PeersRetired != 0 || senders() != 1 {
		t.Fatalf("a sender in use: retired %d, senders %d; want 0 and 1", st.PeersRetired, senders())
	}
	a.mu.Lock()
	old := a.beatPeers[target]
	a.mu.Unlock()
	// Unused: retired after an idle period and at most a quarter more (the
	// check's interval); 2 s allowed for a loaded machine.
	deadline := time.Now().Add(2 * time.Second)
	for a.Stats().PeersRetired == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a sender unused for 2s (idle after %v) was not retired", a.peerIdle)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := senders(); n != 0 {
		t.Fatalf("%d senders left after retiring the only one", n)
	}
	if err := old.enqueue(&beatCall{shard: 1, req: heartbeat(1), resp: &raft.AppendEntriesResponse{}, done: make(chan error, 1)}); !errors.Is(err, errRetired) {
		t.Fatalf("enqueue on a retired sender: %v, want errRetired", err)
	}
	// Used again: a new sender.
	beat()
	if n := senders(); n != 1 {
		t.Fatalf("%d senders after a new call, want 1", n)
	}
}
