package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// restartMux closes m and starts a new Mux listening on its address, as the
// node's process restarting would; the connections peers pooled to m are
// left closed by this end.
func restartMux(t *testing.T, m *Mux) *Mux {
	t.Helper()
	addr := m.Addr().String()
	if err := m.Close(); err != nil {
		t.Fatalf("closing mux %s: %v", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	nm, err := NewMux(ln, nil, WithLogger(testLogger(t, slog.LevelDebug)))
	if err != nil {
		t.Fatalf("NewMux(%s): %v", addr, err)
	}
	t.Cleanup(func() { nm.Close() })
	return nm
}

// answerInPairs answers tr's AppendEntries two at a time, so that two sent
// concurrently are both in flight, each on a connection of its own.
func answerInPairs(t *testing.T, tr *Transport) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var held []raft.RPC
		for {
			select {
			case rpc := <-tr.Consumer():
				held = append(held, rpc)
				if len(held) < 2 {
					continue
				}
				for _, r := range held {
					req := r.Command.(*raft.AppendEntriesRequest)
					r.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: 1001, Success: true}, nil)
				}
				held = nil
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait() })
}

// TestStaleConnsRetried: after the peer restarts, the connections pooled to
// it are closed by its end; an append or a vote request that picks one up
// is sent again on the next connection, not failed back to raft.
func TestStaleConnsRetried(t *testing.T) {
	a, b := newTestMux(t), newTestMux(t)
	ta := mustTransport(t, a, 1, 0) // MaxPool 2
	answerInPairs(t, mustTransport(t, b, 1, 0))
	target := raft.ServerAddress(b.Addr().String())
	withEntries := idleAppend(1)
	withEntries.Entries = []*raft.Log{{Index: 11, Term: 1, Type: raft.LogCommand, Data: []byte("x")}}

	// Two appends in flight at once: two connections, both pooled after.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp raft.AppendEntriesResponse
			errs[i] = ta.AppendEntries("b", target, withEntries, &resp)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("append before the restart: %v", err)
		}
	}
	if st := a.Stats(); st.StaleConns != 0 {
		t.Fatalf("StaleConns = %d before the restart, want 0", st.StaleConns)
	}

	// The peer restarts: both pooled connections are stale. The next append
	// goes through after trying both and dialing a third.
	b = restartMux(t, b)
	fakeRaft(t, mustTransport(t, b, 1, 0), 1)
	var resp raft.AppendEntriesResponse
	if err := ta.AppendEntries("b", target, withEntries, &resp); err != nil || resp.LastLog != 1001 || !resp.Success {
		t.Fatalf("append after the peer restarted: (%+v, %v), want it answered by the new peer (LastLog 1001)", resp, err)
	}
	if st := a.Stats(); st.StaleConns != 2 {
		t.Errorf("StaleConns = %d, want 2 (both pooled connections)", st.StaleConns)
	}

	// The control: raft's NetworkTransport alone fails on a stale
	// connection (the one pooled by the append above).
	b = restartMux(t, b)
	fakeRaft(t, mustTransport(t, b, 1, 0), 1)
	err := ta.NetworkTransport.AppendEntries("b", target, withEntries, &resp)
	if err == nil || !closedByPeer(err) {
		t.Fatalf("NetworkTransport.AppendEntries on a stale connection: %v; want a closed-by-peer error (else this test shows nothing)", err)
	}

	// Vote requests are retried too. (fakeRaft answers them with an error
	// of its own, which shows the request reached the restarted peer.)
	if err := ta.AppendEntries("b", target, withEntries, &resp); err != nil {
		t.Fatalf("append: %v", err)
	}
	b = restartMux(t, b)
	fakeRaft(t, mustTransport(t, b, 1, 0), 1)
	before := a.Stats().StaleConns
	var vote raft.RequestVoteResponse
	err = ta.RequestVote("b", target, &raft.RequestVoteRequest{Term: 2}, &vote)
	if err == nil || !strings.Contains(err.Error(), "unexpected *raft.RequestVoteRequest") {
		t.Fatalf("RequestVote after the peer restarted: %v; want the new peer's answer", err)
	}
	if got := a.Stats().StaleConns - before; got != 1 {
		t.Errorf("RequestVote: %d stale connections retried, want 1", got)
	}

	// A peer that is gone fails the dial: not retried.
	addr := b.Addr().String()
	b.Close()
	before = a.Stats().StaleConns
	if err := ta.AppendEntries("b", target, withEntries, &resp); err == nil {
		t.Fatalf("append to a closed peer %s succeeded", addr)
	}
	if got := a.Stats().StaleConns - before; got > 2 {
		t.Errorf("append to a closed peer: %d retries, want at most MaxPool (2)", got)
	}
}

// appendAsync sends req through tr in the background; the channel gets
// the outcome, an error too if fakeRaft's consumer did not answer it.
func appendAsync(tr *Transport, target raft.ServerAddress, req *raft.AppendEntriesRequest) <-chan error {
	done := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		err := tr.AppendEntries("b", target, req, &resp)
		if err == nil && resp.LastLog != 1001 {
			err = fmt.Errorf("answered by the wrong path: LastLog %d", resp.LastLog)
		}
		done <- err
	}()
	return done
}

// TestRefusedAppendHeld: an append to a follower whose port refuses
// connections (its process down) is held and redialed, not failed back to
// raft at once, and goes through when the follower's port opens again;
// one whose follower stays down fails with the refusal after refusedHold.
func TestRefusedAppendHeld(t *testing.T) {
	a := newTestMux(t)
	ta := mustTransport(t, a, 1, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the follower is down: its port refuses
	withEntries := idleAppend(1)
	withEntries.Entries = []*raft.Log{{Index: 11, Term: 1, Type: raft.LogCommand, Data: []byte("x")}}

	done := appendAsync(ta, raft.ServerAddress(addr), withEntries)
	eventually(t, 5*time.Second, func() error {
		if a.Stats().RefusedRedials == 0 {
			return errors.New("no redial yet")
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("the append returned while its follower was down: %v", err)
	default:
	}
	// The follower's process comes back on the same port.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	b, err := NewMux(ln, nil, WithLogger(testLogger(t, slog.LevelDebug)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	fakeRaft(t, mustTransport(t, b, 1, 0), 1)
	if err := <-done; err != nil {
		t.Fatalf("append held across the follower's restart: %v, want it answered", err)
	}

	// A follower that stays down: the refusal, after the hold.
	b.Close()
	before := a.Stats().RefusedRedials
	start := time.Now()
	var resp raft.AppendEntriesResponse
	err = ta.AppendEntries("b", raft.ServerAddress(addr), withEntries, &resp)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("append to a follower that stays down: %v, want connection refused", err)
	}
	if held := time.Since(start); held < refusedHold {
		t.Fatalf("the append failed after %v, want it held %v first", held, refusedHold)
	}
	if n := a.Stats().RefusedRedials - before; n < 2 {
		t.Fatalf("%d redials while held, want several", n)
	}
	// Heartbeats are not held.
	start = time.Now()
	if err := ta.AppendEntries("b", raft.ServerAddress(addr), heartbeat(1), &resp); err == nil {
		t.Fatalf("heartbeat to a follower that is down: no error")
	}
	if d := time.Since(start); d >= refusedHold {
		t.Fatalf("a heartbeat to a down follower took %v: held like an append", d)
	}
}

// TestUnservedShardAppendHeld: an append to a node that is up but has not
// opened the shard yet (it closes such connections unanswered, as a node
// restarting opens its shards one by one) is held too, and goes through
// once the shard is open there.
func TestUnservedShardAppendHeld(t *testing.T) {
	a, b := newTestMux(t), newTestMux(t)
	ta := mustTransport(t, a, 1, 0)
	target := raft.ServerAddress(b.Addr().String())
	withEntries := idleAppend(1)
	withEntries.Entries = []*raft.Log{{Index: 11, Term: 1, Type: raft.LogCommand, Data: []byte("x")}}

	done := appendAsync(ta, target, withEntries)
	eventually(t, 5*time.Second, func() error {
		if b.Stats().UnknownShard == 0 || a.Stats().RefusedRedials == 0 {
			return errors.New("no closed connection and redial yet")
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("the append returned while the shard was not open there: %v", err)
	default:
	}
	fakeRaft(t, mustTransport(t, b, 1, 0), 1) // the shard opens
	if err := <-done; err != nil {
		t.Fatalf("append held until the shard opened: %v, want it answered", err)
	}
}
