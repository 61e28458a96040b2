package shard

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Tests of the batcher alone, in front of a fake raft: the test decides
// when raft accepts an entry (raft.Apply blocks while raft's leader loop
// writes the previous entries) and what it answers.

// fakeRaft records the entries submitted and answers each with one result
// per command, echoing the command's request id in SessionId, unless
// answer says otherwise.
type fakeRaft struct {
	mu       sync.Mutex
	entries  []*pb.Entry
	timeouts []time.Duration
	hold     chan struct{}         // non-nil: submit blocks until it closes
	holding  chan struct{}         // closed when a submit blocks at hold
	answer   func(entry int) error // error for the entry-th entry (0-based); nil: results
	release  map[int]chan struct{} // entry → the future completes when closed
}

func (f *fakeRaft) submit(data []byte, timeout time.Duration) raft.ApplyFuture {
	var e pb.Entry
	if err := e.UnmarshalVT(data); err != nil {
		panic(err)
	}
	f.mu.Lock()
	hold, holding := f.hold, f.holding
	if hold != nil {
		f.holding = nil
	}
	f.mu.Unlock()
	if hold != nil {
		if holding != nil {
			close(holding)
		}
		<-hold
	}
	f.mu.Lock()
	i := len(f.entries)
	f.entries = append(f.entries, &e)
	f.timeouts = append(f.timeouts, timeout)
	fut := &fakeFuture{done: make(chan struct{})}
	if f.answer != nil {
		fut.err = f.answer(i)
	}
	wait := f.release[i]
	f.mu.Unlock()
	if fut.err == nil {
		res := make([]*pb.Result, len(e.Commands))
		for j, c := range e.Commands {
			res[j] = &pb.Result{SessionId: c.RequestId}
		}
		fut.resp = &entryResults{results: res}
	}
	go func() {
		if wait != nil {
			<-wait
		}
		close(fut.done)
	}()
	return fut
}

// holdNext makes the next submit block until the returned release is
// called; held is closed once it blocks.
func (f *fakeRaft) holdNext() (held <-chan struct{}, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold, f.holding = make(chan struct{}), make(chan struct{})
	hold := f.hold
	return f.holding, func() {
		f.mu.Lock()
		f.hold = nil
		f.mu.Unlock()
		close(hold)
	}
}

func (f *fakeRaft) entryCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.entries)
}

func (f *fakeRaft) entry(i int) *pb.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.entries[i]
}

type fakeFuture struct {
	done chan struct{}
	err  error
	resp any
}

func (f *fakeFuture) Error() error  { <-f.done; return f.err }
func (f *fakeFuture) Response() any { return f.resp }
func (f *fakeFuture) Index() uint64 { return 0 }

// newTestBatcher runs a batcher of max commands in front of f for a
// group that closes at the end of the test.
func newTestBatcher(t *testing.T, f *fakeRaft, max int) (*Group, *batcher) {
	t.Helper()
	return newTestBatcherInflight(t, f, max, 0)
}

// newTestBatcherInflight is newTestBatcher with at most inflight entries
// unanswered (0: no bound).
func newTestBatcherInflight(t *testing.T, f *fakeRaft, max, inflight int) (*Group, *batcher) {
	t.Helper()
	g := &Group{shard: 7, closing: make(chan struct{})}
	b := newBatcher(g, max, inflight, f.submit)
	g.prop = b
	t.Cleanup(func() {
		g.closeOnce.Do(func() { close(g.closing) })
		b.wait()
	})
	return g, b
}

func cmds(ids ...string) []*pb.Command {
	out := make([]*pb.Command, len(ids))
	for i, id := range ids {
		out[i] = &pb.Command{RequestId: id, Body: &pb.Command_Tick{Tick: &pb.Tick{}}}
	}
	return out
}

type call struct {
	ids []string
	res []*pb.Result
	err error
}

// goPropose starts a propose of commands named ids; the call's outcome is
// in the returned call once done is closed.
func goPropose(ctx context.Context, b *batcher, ids ...string) (*call, <-chan struct{}) {
	c := &call{ids: ids}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.res, c.err = b.propose(ctx, cmds(ids...))
	}()
	return c, done
}

// waitQueued waits until n calls wait in the batcher's queue.
func waitQueued(t *testing.T, b *batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(b.reqs) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued in the batcher, want %d", len(b.reqs), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// blockFirst submits one call whose entry raft is slow to accept, so that
// the next calls queue up behind it; it returns the release.
func blockFirst(t *testing.T, f *fakeRaft, b *batcher) (first *call, firstDone <-chan struct{}, release func()) {
	t.Helper()
	held, release := f.holdNext()
	first, firstDone = goPropose(context.Background(), b, "first")
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first call never reached raft")
	}
	return first, firstDone, release
}

func checkOwnResults(t *testing.T, c *call) {
	t.Helper()
	if c.err != nil {
		t.Fatalf("call %v: %v", c.ids, c.err)
	}
	if len(c.res) != len(c.ids) {
		t.Fatalf("call %v got %d results, want %d", c.ids, len(c.res), len(c.ids))
	}
	for i, r := range c.res {
		if r.SessionId != c.ids[i] {
			t.Fatalf("call %v: result %d is for command %q, want %q", c.ids, i, r.SessionId, c.ids[i])
		}
	}
}

func TestBatcherPacksWaitingCallsIntoOneEntry(t *testing.T) {
	f := &fakeRaft{}
	_, b := newTestBatcher(t, f, MaxBatchCommands)
	first, firstDone, release := blockFirst(t, f, b)

	var calls []*call
	var dones []<-chan struct{}
	total := 0
	for i := range 20 {
		var ids []string
		for j := range 1 + i%3 { // 1 to 3 commands per call
			ids = append(ids, fmt.Sprintf("c%d-%d", i, j))
		}
		total += len(ids)
		c, d := goPropose(context.Background(), b, ids...)
		calls, dones = append(calls, c), append(dones, d)
	}
	waitQueued(t, b, 20)
	release()
	<-firstDone
	checkOwnResults(t, first)
	for i, c := range calls {
		<-dones[i]
		checkOwnResults(t, c)
	}
	if n := f.entryCount(); n != 2 {
		t.Fatalf("%d entries for 21 calls, want 2: the first, and one with the 20 that waited", n)
	}
	if got := len(f.entry(1).Commands); got != total {
		t.Fatalf("second entry has %d commands, want all %d of the waiting calls", got, total)
	}
	if st := (BatchStats{Entries: b.entries.Load(), Commands: b.commands.Load()}); st != (BatchStats{2, uint64(total + 1)}) {
		t.Fatalf("stats %+v, want 2 entries and %d commands", st, total+1)
	}
}

// TestBatcherWaitsForTheEntryInFlight: with one entry in flight, the calls
// made while it is uncommitted wait, and all go into the next entry.
func TestBatcherWaitsForTheEntryInFlight(t *testing.T) {
	release := map[int]chan struct{}{0: make(chan struct{})}
	f := &fakeRaft{release: release}
	_, b := newTestBatcherInflight(t, f, MaxBatchCommands, 1)
	first, firstDone := goPropose(context.Background(), b, "first")
	for f.entryCount() < 1 {
		time.Sleep(time.Millisecond)
	}
	var calls []*call
	var dones []<-chan struct{}
	for i := range 10 {
		c, d := goPropose(context.Background(), b, "c"+strconv.Itoa(i))
		calls, dones = append(calls, c), append(dones, d)
	}
	waitQueued(t, b, 9) // the loop holds one while it waits for the slot
	if n := f.entryCount(); n != 1 {
		t.Fatalf("%d entries submitted while the first is uncommitted, want 1", n)
	}
	close(release[0])
	<-firstDone
	checkOwnResults(t, first)
	for i, c := range calls {
		<-dones[i]
		checkOwnResults(t, c)
	}
	if n := f.entryCount(); n != 2 || len(f.entry(1).Commands) != 10 {
		t.Fatalf("%d entries (second with %d commands), want 2 with all 10 waiting calls in the second", n, len(f.entry(1).Commands))
	}
	// A failed entry frees its slot too.
	f.mu.Lock()
	f.answer = func(int) error { return errors.New("no") }
	f.mu.Unlock()
	for range 3 {
		if _, err := b.propose(context.Background(), cmds("x")); err == nil {
			t.Fatal("want the fake's error")
		}
	}
}

func TestBatcherErrorFailsEveryCallerOfTheEntry(t *testing.T) {
	errDisk := errors.New("disk on fire")
	f := &fakeRaft{answer: func(i int) error {
		if i == 1 {
			return errDisk
		}
		return nil
	}}
	_, b := newTestBatcher(t, f, MaxBatchCommands)
	first, firstDone, release := blockFirst(t, f, b)
	var calls []*call
	var dones []<-chan struct{}
	for i := range 10 {
		c, d := goPropose(context.Background(), b, "c"+strconv.Itoa(i))
		calls, dones = append(calls, c), append(dones, d)
	}
	waitQueued(t, b, 10)
	release()
	<-firstDone
	checkOwnResults(t, first)
	for i, c := range calls {
		<-dones[i]
		if !errors.Is(c.err, errDisk) || c.res != nil {
			t.Errorf("call %v of the failed entry: results %v, error %v; want no results and the entry's error", c.ids, c.res, c.err)
		}
	}
	// The batcher goes on with the next entry.
	c, d := goPropose(context.Background(), b, "after")
	<-d
	checkOwnResults(t, c)
}

func TestBatcherNeverExceedsMaxNorSplitsACall(t *testing.T) {
	f := &fakeRaft{}
	_, b := newTestBatcher(t, f, 8)
	_, firstDone, release := blockFirst(t, f, b)
	sizes := []int{3, 3, 3, 12, 1, 5, 2, 2}
	var calls []*call
	var dones []<-chan struct{}
	for i, n := range sizes {
		var ids []string
		for j := range n {
			ids = append(ids, fmt.Sprintf("c%d-%d", i, j))
		}
		c, d := goPropose(context.Background(), b, ids...)
		calls, dones = append(calls, c), append(dones, d)
		waitQueued(t, b, i+1) // in this order
	}
	release()
	<-firstDone
	for i, c := range calls {
		<-dones[i]
		checkOwnResults(t, c)
	}
	entryOf := map[string]int{}
	for i := range f.entryCount() {
		for _, c := range f.entry(i).Commands {
			entryOf[c.RequestId] = i
		}
	}
	for _, c := range calls {
		for _, id := range c.ids {
			if entryOf[id] != entryOf[c.ids[0]] {
				t.Fatalf("call %v split over entries %d and %d", c.ids, entryOf[c.ids[0]], entryOf[id])
			}
		}
	}
	// 3+3 | 3 | 12 | 1+5+2 | 2
	want := []int{1, 6, 3, 12, 8, 2}
	if f.entryCount() != len(want) {
		t.Fatalf("%d entries, want %d sized %v", f.entryCount(), len(want), want)
	}
	for i, n := range want {
		if got := len(f.entry(i).Commands); got != n {
			t.Fatalf("entry %d has %d commands, want %d (entries sized %v)", i, got, n, want)
		}
	}
}

func TestBatcherCallerCancelledWhileWaitingIsLeftOut(t *testing.T) {
	f := &fakeRaft{}
	_, b := newTestBatcher(t, f, MaxBatchCommands)
	_, firstDone, release := blockFirst(t, f, b)
	ctx, cancel := context.WithCancel(context.Background())
	a, aDone := goPropose(context.Background(), b, "a")
	waitQueued(t, b, 1)
	gone, goneDone := goPropose(ctx, b, "gone")
	waitQueued(t, b, 2)
	c, cDone := goPropose(context.Background(), b, "c")
	waitQueued(t, b, 3)
	cancel()
	<-goneDone
	if !errors.Is(gone.err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", gone.err)
	}
	release()
	<-firstDone
	<-aDone
	<-cDone
	checkOwnResults(t, a)
	checkOwnResults(t, c)
	if e := f.entry(1); len(e.Commands) != 2 || e.Commands[0].RequestId != "a" || e.Commands[1].RequestId != "c" {
		t.Fatalf("second entry %v, want a and c without the cancelled call", e.Commands)
	}
}

func TestBatcherCallerCancelledAfterSubmissionDoesNotCancelOthers(t *testing.T) {
	release := map[int]chan struct{}{0: make(chan struct{})}
	f := &fakeRaft{release: release}
	_, b := newTestBatcher(t, f, MaxBatchCommands)
	held, releaseSubmit := f.holdNext()
	ctx, cancel := context.WithCancel(context.Background())
	gone, goneDone := goPropose(ctx, b, "gone")
	<-held
	a, aDone := goPropose(context.Background(), b, "a")
	waitQueued(t, b, 1)
	releaseSubmit() // the entry of "gone" is in raft, not yet committed
	cancel()
	<-goneDone
	if !errors.Is(gone.err, ErrIndeterminate) || !errors.Is(gone.err, context.Canceled) {
		t.Fatalf("call cancelled after submission: %v, want ErrIndeterminate and context.Canceled", gone.err)
	}
	close(release[0])
	<-aDone
	checkOwnResults(t, a)
}

func TestBatcherEnqueueTimeoutIsTheLatestDeadline(t *testing.T) {
	f := &fakeRaft{}
	_, b := newTestBatcher(t, f, MaxBatchCommands)
	for _, tc := range []struct {
		name      string
		deadlines []time.Duration // 0: none
		want      time.Duration   // 0: none
	}{
		{"all with deadlines", []time.Duration{time.Second, 3 * time.Second, 2 * time.Second}, 3 * time.Second},
		{"one without", []time.Duration{time.Second, 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, firstDone, release := blockFirst(t, f, b)
			var dones []<-chan struct{}
			for i, d := range tc.deadlines {
				ctx := context.Background()
				if d > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, d)
					defer cancel()
				}
				_, done := goPropose(ctx, b, "c"+strconv.Itoa(i))
				dones = append(dones, done)
			}
			waitQueued(t, b, len(tc.deadlines))
			release()
			<-firstDone
			for _, d := range dones {
				<-d
			}
			f.mu.Lock()
			got := f.timeouts[len(f.timeouts)-1]
			f.mu.Unlock()
			if (tc.want == 0) != (got == 0) || got > tc.want || got < tc.want-time.Second {
				t.Fatalf("enqueue timeout %v, want %v (0: none)", got, tc.want)
			}
		})
	}
}

func TestBatcherIdleCallIsSubmittedAtOnce(t *testing.T) {
	f := &fakeRaft{}
	_, b := newTestBatcher(t, f, MaxBatchCommands)
	for i := range 3 {
		c, d := goPropose(context.Background(), b, "c"+strconv.Itoa(i))
		<-d // nothing else is coming: no linger waiting for company
		checkOwnResults(t, c)
	}
	if n := f.entryCount(); n != 3 {
		t.Fatalf("%d entries for 3 calls one after another, want 3", n)
	}
}

func TestBatcherStopsOnCloseWithoutLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	release := map[int]chan struct{}{1: make(chan struct{})} // entry 1 never commits before close
	f := &fakeRaft{release: release}
	g, b := newTestBatcher(t, f, MaxBatchCommands)
	c, d := goPropose(context.Background(), b, "ok")
	<-d
	checkOwnResults(t, c)
	stuck, stuckDone := goPropose(context.Background(), b, "stuck")
	for f.entryCount() < 2 {
		time.Sleep(time.Millisecond)
	}
	g.closeOnce.Do(func() { close(g.closing) })
	<-stuckDone
	if !errors.Is(stuck.err, ErrIndeterminate) || !errors.Is(stuck.err, ErrShutdown) {
		t.Fatalf("call waiting at close: %v, want ErrIndeterminate and ErrShutdown", stuck.err)
	}
	b.wait()
	if _, err := b.propose(context.Background(), cmds("late")); !errors.Is(err, ErrShutdown) || errors.Is(err, ErrIndeterminate) {
		t.Fatalf("call after close: %v, want ErrShutdown alone", err)
	}
	close(release[1]) // raft answers at its shutdown
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}
