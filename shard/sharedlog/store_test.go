package sharedlog

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

func openTest(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shared.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func shardView(t *testing.T, s *Store, n uint32) *View {
	t.Helper()
	v, err := s.Shard(n)
	if err != nil {
		t.Fatalf("Shard(%d): %v", n, err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func entry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 1 + i/10, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d", i)}
}

func storeRange(t *testing.T, v *View, from, to uint64) {
	t.Helper()
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, entry(i))
	}
	if err := v.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs(%d..%d): %v", from, to, err)
	}
}

func wantIndexes(t *testing.T, v *View, first, last uint64) {
	t.Helper()
	f, err := v.FirstIndex()
	if err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	l, err := v.LastIndex()
	if err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	if f != first || l != last {
		t.Fatalf("shard %d: first, last = %d, %d; want %d, %d", v.n, f, l, first, last)
	}
	for i := first; i <= last && last > 0; i++ {
		var got raft.Log
		if err := v.GetLog(i, &got); err != nil {
			t.Fatalf("shard %d: GetLog(%d) within %d..%d: %v", v.n, i, first, last, err)
		}
		if want := entry(i); got.Term != want.Term || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("shard %d: GetLog(%d) = term %d %q; want term %d %q", v.n, i, got.Term, got.Data, want.Term, want.Data)
		}
	}
}

// The behaviour raft relies on, as raft-boltdb's tests check it.
func TestViewBehavesLikeBoltStore(t *testing.T) {
	s, _ := openTest(t, Options{})
	v := shardView(t, s, 3)

	wantIndexes(t, v, 0, 0)
	var l raft.Log
	if err := v.GetLog(1, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog on an empty log = %v; want raft.ErrLogNotFound", err)
	}
	if _, err := v.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get of a missing key = %v; want an error reading \"not found\"", err)
	}
	if _, err := v.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64 of a missing key = %v; want an error reading \"not found\"", err)
	}

	at := time.Date(2026, 11, 22, 4, 30, 0, 123456789, time.UTC)
	in := &raft.Log{Index: 1, Term: 7, Type: raft.LogConfiguration, Data: []byte("config"), Extensions: []byte("ext"), AppendedAt: at}
	if err := v.StoreLog(in); err != nil {
		t.Fatalf("StoreLog: %v", err)
	}
	if err := v.GetLog(1, &l); err != nil {
		t.Fatalf("GetLog(1): %v", err)
	}
	if l.Index != 1 || l.Term != 7 || l.Type != raft.LogConfiguration || string(l.Data) != "config" ||
		string(l.Extensions) != "ext" || !l.AppendedAt.Equal(at) {
		t.Fatalf("GetLog(1) = %+v; want %+v", l, *in)
	}

	storeRange(t, v, 1, 10)
	wantIndexes(t, v, 1, 10)
	if err := v.GetLog(11, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(11) past the end = %v; want raft.ErrLogNotFound", err)
	}
	// Overwriting an index replaces the entry (raft rewrites a follower's
	// conflicting suffix).
	if err := v.StoreLog(&raft.Log{Index: 10, Term: 99, Data: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if err := v.GetLog(10, &l); err != nil || l.Term != 99 || string(l.Data) != "new" {
		t.Fatalf("GetLog(10) after overwrite = %+v, %v; want term 99 \"new\"", l, err)
	}
	storeRange(t, v, 10, 10)

	if err := v.DeleteRange(1, 4); err != nil {
		t.Fatalf("DeleteRange(1, 4): %v", err)
	}
	wantIndexes(t, v, 5, 10)
	if err := v.DeleteRange(9, 10); err != nil {
		t.Fatalf("DeleteRange(9, 10): %v", err)
	}
	wantIndexes(t, v, 5, 8)
	if err := v.DeleteRange(5, 8); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, v, 0, 0)

	if err := v.Set([]byte("k"), []byte("v")); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if got, err := v.Get([]byte("k")); err != nil || string(got) != "v" {
		t.Fatalf("Get(k) = %q, %v; want \"v\"", got, err)
	}
	if err := v.Set([]byte("empty"), nil); err != nil {
		t.Fatalf("Set of an empty value: %v", err)
	}
	if got, err := v.Get([]byte("empty")); err != nil || len(got) != 0 {
		t.Fatalf("Get of an empty value = %q, %v; want no error", got, err)
	}
	if err := v.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatalf("SetUint64: %v", err)
	}
	if got, err := v.GetUint64([]byte("CurrentTerm")); err != nil || got != 42 {
		t.Fatalf("GetUint64 = %d, %v; want 42", got, err)
	}
	if got, _ := v.Get([]byte("CurrentTerm")); !bytes.Equal(got, []byte{0, 0, 0, 0, 0, 0, 0, 42}) {
		t.Fatalf("SetUint64 stored %x; want 8 bytes big endian, as raft-boltdb", got)
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	at := time.Unix(1_800_000_000, 5).UTC()
	for _, in := range []raft.Log{
		{Index: 1},
		{Index: 2, Term: 1 << 60, Type: raft.LogBarrier},
		{Index: 3, Term: 3, Type: raft.LogCommand, Data: bytes.Repeat([]byte{0xff}, 70000)},
		{Index: 4, Term: 4, Extensions: []byte{1}, AppendedAt: at},
		{Index: 5, Term: 5, Data: []byte("d"), Extensions: []byte("e"), AppendedAt: at},
	} {
		b, err := encodeLog(&in)
		if err != nil {
			t.Fatalf("encode %d: %v", in.Index, err)
		}
		var out raft.Log
		if err := decodeLog(in.Index, b, &out); err != nil {
			t.Fatalf("decode %d: %v", in.Index, err)
		}
		if out.Index != in.Index || out.Term != in.Term || out.Type != in.Type || !bytes.Equal(out.Data, in.Data) ||
			!bytes.Equal(out.Extensions, in.Extensions) || !out.AppendedAt.Equal(in.AppendedAt) {
			t.Fatalf("round trip of %d: got %+v", in.Index, out)
		}
		// Appending to the decoded data must not overwrite the extensions.
		if len(out.Data) > 0 && len(out.Extensions) > 0 {
			_ = append(out.Data, 'x')
			if !bytes.Equal(out.Extensions, in.Extensions) {
				t.Fatalf("entry %d: data and extensions share memory", in.Index)
			}
		}
		for cut := range len(b) {
			if err := decodeLog(in.Index, b[:cut], &out); err == nil {
				t.Fatalf("entry %d cut to %d of %d bytes decoded without error", in.Index, cut, len(b))
			}
		}
	}
	if _, err := encodeLog(&raft.Log{Index: 1, AppendedAt: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Fatal("a time beyond Unix nanoseconds was encoded; want an error")
	}
}

func TestShardsAreSeparate(t *testing.T) {
	s, _ := openTest(t, Options{})
	a, b := shardView(t, s, 1), shardView(t, s, 2)
	storeRange(t, a, 1, 5)
	storeRange(t, b, 100, 101)
	if err := a.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, a, 1, 5)
	wantIndexes(t, b, 100, 101)
	if _, err := b.GetUint64([]byte("CurrentTerm")); err == nil {
		t.Fatal("shard 2 sees shard 1's stable store")
	}
	if err := b.DeleteRange(0, 1000); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, a, 1, 5)
	wantIndexes(t, b, 0, 0)
}

func TestReopenKeepsData(t *testing.T) {
	s, path := openTest(t, Options{})
	v, w := shardView(t, s, 7), shardView(t, s, 8)
	storeRange(t, v, 1, 20)
	if err := v.SetUint64([]byte("CurrentTerm"), 9); err != nil {
		t.Fatal(err)
	}
	v.Close()
	if err := v.StoreLog(entry(21)); !errors.Is(err, ErrClosed) {
		t.Fatalf("StoreLog on a closed view = %v; want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Shard(7); !errors.Is(err, ErrClosed) {
		t.Fatalf("Shard on a closed store = %v; want ErrClosed", err)
	}
	if err := w.StoreLog(entry(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("StoreLog on a view of a closed store = %v; want ErrClosed", err)
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer s2.Close()
	v2 := shardView(t, s2, 7)
	wantIndexes(t, v2, 1, 20)
	if got, err := v2.GetUint64([]byte("CurrentTerm")); err != nil || got != 9 {
		t.Fatalf("CurrentTerm after reopening = %d, %v; want 9", got, err)
	}
}

func TestSecondOpenFailsOnLock(t *testing.T) {
	_, path := openTest(t, Options{})
	start := time.Now()
	if s, err := Open(path, Options{Timeout: 100 * time.Millisecond}); err == nil {
		s.Close()
		t.Fatal("a second Open of a file in use succeeded; want a lock timeout")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %v", d)
	}
}

func TestDropShard(t *testing.T) {
	s, _ := openTest(t, Options{})
	a, b := shardView(t, s, 1), shardView(t, s, 2)
	storeRange(t, a, 1, 3)
	if err := a.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	storeRange(t, b, 1, 3)
	if got, _ := s.Shards(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("Shards = %v; want [1 2]", got)
	}
	if err := s.DropShard(1); !errors.Is(err, ErrShardOpen) {
		t.Fatalf("DropShard of an open shard = %v; want ErrShardOpen", err)
	}
	a.Close()
	if err := s.DropShard(1); err != nil {
		t.Fatalf("DropShard: %v", err)
	}
	if err := s.DropShard(1); err != nil {
		t.Fatalf("DropShard of a dropped shard: %v", err)
	}
	if got, _ := s.Shards(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("Shards after dropping 1 = %v; want [2]", got)
	}
	a2 := shardView(t, s, 1)
	has, err := raft.HasExistingState(a2, a2, raft.NewInmemSnapshotStore())
	if err != nil || has {
		t.Fatalf("HasExistingState of a dropped shard = %v, %v; want false", has, err)
	}
	wantIndexes(t, b, 1, 3)
	// A shard that never wrote has no state either, and opening it
	// created nothing.
	c := shardView(t, s, 9)
	if has, err := raft.HasExistingState(c, c, raft.NewInmemSnapshotStore()); err != nil || has {
		t.Fatalf("HasExistingState of a new shard = %v, %v; want false", has, err)
	}
	if err := b.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	if has, err := raft.HasExistingState(b, b, raft.NewInmemSnapshotStore()); err != nil || !has {
		t.Fatalf("HasExistingState of a shard with a log and term = %v, %v; want true", has, err)
	}
}

// holdCommits makes the committer block before each commit until release
// is called, and reports each commit's request count on commits.
type holdCommits struct {
	entered chan int
	proceed chan struct{}
}

func holdCommitsOf(s *Store) *holdCommits {
	h := &holdCommits{entered: make(chan int, 100), proceed: make(chan struct{})}
	s.commit = func(tx *bbolt.Tx) error {
		h.entered <- 0
		<-h.proceed
		return tx.Commit()
	}
	return h
}

// waitQueued waits until n writes are queued behind the committer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		q := len(s.queue)
		s.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after 5s; want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrentShardsShareCommits(t *testing.T) {
	s, _ := openTest(t, Options{MaxLinger: -1})
	h := holdCommitsOf(s)
	const shards = 16
	views := make([]*View, shards)
	for i := range views {
		views[i] = shardView(t, s, uint32(i))
	}
	// The first write holds the committer; the other shards' writes queue
	// behind it and must all go in the next commit.
	first := make(chan error, 1)
	go func() { first <- views[0].StoreLog(entry(1)) }()
	<-h.entered
	var wg sync.WaitGroup
	errs := make(chan error, shards)
	for i := 1; i < shards; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- views[i].StoreLogs([]*raft.Log{entry(1), entry(2)})
		}()
	}
	waitQueued(t, s, shards-1)
	close(h.proceed)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Commits != 2 || st.Writes != shards || st.Entries != 1+2*(shards-1) || st.Shards != 1+shards-1 {
		t.Fatalf("stats = %+v; want 2 commits carrying %d writes of %d entries from %d shards", st, shards, 1+2*(shards-1), shards)
	}
	for i := 1; i < shards; i++ {
		wantIndexes(t, views[i], 1, 2)
	}
}

func TestSerialWritesCommitOneByOne(t *testing.T) {
	s, _ := openTest(t, Options{MaxLinger: time.Second})
	a, b := shardView(t, s, 1), shardView(t, s, 2)
	start := time.Now()
	for i := uint64(1); i <= 50; i++ {
		storeRange(t, a, i, i)
		if i%10 == 0 {
			if err := b.SetUint64([]byte("k"), i); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := s.Stats()
	if st.Commits != 55 || st.Writes != 55 || st.Lingers != 0 {
		t.Fatalf("stats after 55 serial writes = %+v; want 55 commits, no linger", st)
	}
	// With a 1s linger, any wait would show.
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("55 serial writes took %v", d)
	}
}

func TestLingerOnlyWhileSeveralShardsWrite(t *testing.T) {
	s, _ := openTest(t, Options{MaxLinger: time.Hour})
	a, b, c := shardView(t, s, 1), shardView(t, s, 2), shardView(t, s, 3)
	// A commit carrying both shards' writes: hold a commit of shard 3 (one
	// shard: the next commit does not linger), queue both behind it.
	h := holdCommitsOf(s)
	errs := make(chan error, 3)
	go func() { errs <- c.StoreLog(entry(1)) }()
	<-h.entered
	go func() { errs <- a.StoreLog(entry(1)) }()
	go func() { errs <- b.StoreLog(entry(1)) }()
	waitQueued(t, s, 2)
	close(h.proceed)
	if err := errors.Join(<-errs, <-errs, <-errs); err != nil {
		t.Fatal(err)
	}
	s.commit = (*bbolt.Tx).Commit
	if st := s.Stats(); st.Commits != 2 || st.Shards != 3 || st.Lingers != 0 {
		t.Fatalf("stats = %+v; want a commit of 1 shard, then one of 2, no linger", st)
	}
	// Now a write of shard 1 alone lingers (up to an hour) until shard 2
	// writes too, and both share one commit.
	doneA := make(chan error, 1)
	go func() { doneA <- a.StoreLog(entry(2)) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Lingers != 1 {
		if time.Now().After(deadline) {
			t.Fatal("a lone write after a commit of two shards did not linger")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-doneA:
		t.Fatalf("shard 1's write returned (%v) while the commit lingered for shard 2", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := b.StoreLog(entry(2)); err != nil {
		t.Fatal(err)
	}
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Commits != 3 || st.Shards != 5 {
		t.Fatalf("stats = %+v; want the two writes in one commit", st)
	}
}

func TestLingerIsBounded(t *testing.T) {
	s, _ := openTest(t, Options{MaxLinger: 20 * time.Millisecond})
	a, b := shardView(t, s, 1), shardView(t, s, 2)
	// Two shards writing at once, then one alone for a while: each of its
	// writes waits at most MaxLinger, and only the first one waits (its
	// commit carries one shard).
	var wg sync.WaitGroup
	for i := uint64(1); i <= 20; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); storeRange(t, a, i, i) }()
		go func() { defer wg.Done(); storeRange(t, b, i, i) }()
		wg.Wait()
	}
	before := s.Stats().Lingers
	start := time.Now()
	for i := uint64(21); i <= 40; i++ {
		storeRange(t, a, i, i)
	}
	if d := time.Since(start); d > 20*20*time.Millisecond {
		t.Fatalf("20 writes of one shard took %v; lingering should have stopped after the first", d)
	}
	if got := s.Stats().Lingers - before; got > 1 {
		t.Fatalf("%d of one shard's lone writes lingered; want at most 1", got)
	}
}

func TestFailedApplyFailsTheWholeCommit(t *testing.T) {
	s, _ := openTest(t, Options{MaxLinger: -1})
	h := holdCommitsOf(s)
	views := []*View{shardView(t, s, 1), shardView(t, s, 2), shardView(t, s, 3)}
	go func() { views[0].StoreLog(entry(1)) }() // holds the committer
	<-h.entered
	boom := errors.New("boom")
	errs := make(chan error, 4)
	for _, v := range views {
		go func() { errs <- v.StoreLogs([]*raft.Log{entry(2), entry(3)}) }()
	}
	go func() { errs <- s.write(99, 0, func(*bbolt.Tx) error { return boom }) }()
	waitQueued(t, s, 4)
	close(h.proceed)
	go func() {
		for range h.entered {
		}
	}()
	for range 4 {
		if err := <-errs; err == nil {
			t.Fatal("a write combined with a failing one succeeded; want every caller to fail")
		}
	}
	for _, v := range views {
		if last, _ := v.LastIndex(); last > 1 {
			t.Fatalf("shard %d: entries of a failed commit are stored (last index %d)", v.n, last)
		}
	}
	// A failure before the commit is not sticky.
	storeRange(t, views[1], 2, 3)
	if st := s.Stats(); st.Failures != 1 {
		t.Fatalf("stats = %+v; want 1 failure", st)
	}
}

func TestFailedCommitStopsTheStore(t *testing.T) {
	s, path := openTest(t, Options{MaxLinger: -1})
	a, b := shardView(t, s, 1), shardView(t, s, 2)
	storeRange(t, a, 1, 1)
	hold := make(chan struct{})
	entered := make(chan struct{})
	fsync := errors.New("fdatasync: input/output error")
	s.commit = func(tx *bbolt.Tx) error {
		close(entered)
		<-hold
		return fsync // as bolt does after a failed fdatasync
	}
	errs := make(chan error, 3)
	go func() { errs <- a.StoreLog(entry(2)) }()
	<-entered
	go func() { errs <- b.StoreLog(entry(1)) }()
	go func() { errs <- b.SetUint64([]byte("CurrentTerm"), 5) }()
	waitQueued(t, s, 2)
	close(hold)
	for range 3 {
		if err := <-errs; !errors.Is(err, ErrFailed) || !errors.Is(err, fsync) {
			t.Fatalf("write in or after a failed commit = %v; want ErrFailed wrapping the fsync error", err)
		}
	}
	for _, f := range []func() error{
		func() error { return a.StoreLog(entry(2)) },
		func() error { return b.Set([]byte("k"), []byte("v")) },
		func() error { return a.DeleteRange(1, 1) },
		func() error { v := shardView(t, s, 3); return v.StoreLog(entry(1)) },
	} {
		if err := f(); !errors.Is(err, ErrFailed) {
			t.Fatalf("write after a failed fsync = %v; want ErrFailed", err)
		}
	}
	if st := s.Stats(); st.Failures != 1 || st.Commits != 1 {
		t.Fatalf("stats = %+v; want 1 commit, 1 failure", st)
	}
	wantIndexes(t, a, 1, 1) // reads still work
	s.Close()
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	wantIndexes(t, shardView(t, s2, 1), 1, 1)
}

func TestDeleteRangeInChunks(t *testing.T) {
	s, _ := openTest(t, Options{DeleteChunk: 10})
	v := shardView(t, s, 1)
	storeRange(t, v, 1, 100)
	before := s.Stats().Commits
	if err := v.DeleteRange(1, 95); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Commits - before; got != 10 {
		t.Fatalf("deleting 95 entries in chunks of 10 took %d commits; want 10", got)
	}
	wantIndexes(t, v, 96, 100)
	if err := v.DeleteRange(0, 1<<64-1); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, v, 0, 0)
	// Other shards' writes go on between the chunks.
	storeRange(t, v, 1, 1000)
	w := shardView(t, s, 2)
	done := make(chan error, 1)
	go func() { done <- v.DeleteRange(1, 1000) }()
	for i := uint64(1); i <= 20; i++ {
		storeRange(t, w, i, i)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, v, 0, 0)
	wantIndexes(t, w, 1, 20)
}

// A crash part way through a chunked delete leaves a contiguous log: a
// suffix is deleted from the end, a prefix from the start.
func TestDeleteRangeInterruptedLeavesContiguousLog(t *testing.T) {
	for _, tc := range []struct {
		name        string
		min, max    uint64
		first, last uint64 // after two chunks of 10
	}{
		{"prefix", 1, 60, 21, 100},
		{"suffix", 41, 100, 1, 80},
		{"suffix beyond the end", 41, 1 << 40, 1, 80},
		{"whole log", 1, 100, 1, 80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := openTest(t, Options{DeleteChunk: 10})
			v := shardView(t, s, 1)
			storeRange(t, v, 1, 100)
			n := 0
			s.commit = func(tx *bbolt.Tx) error {
				if n++; n == 3 {
					return errors.New("crash")
				}
				return tx.Commit()
			}
			if err := v.DeleteRange(tc.min, tc.max); err == nil {
				t.Fatal("DeleteRange with a failing third commit succeeded")
			}
			v.Close()
			s.Close()
			s2, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			wantIndexes(t, shardView(t, s2, 1), tc.first, tc.last)
		})
	}
}

func TestManyShardsConcurrently(t *testing.T) {
	s, path := openTest(t, Options{})
	const shards, per = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, shards)
	for n := range uint32(shards) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.Shard(n)
			if err != nil {
				errs <- err
				return
			}
			defer v.Close()
			for i := uint64(1); i <= per; i++ {
				if err := v.StoreLogs([]*raft.Log{entry(i)}); err != nil {
					errs <- err
					return
				}
				if err := v.SetUint64([]byte("CurrentTerm"), i); err != nil {
					errs <- err
					return
				}
				if i%10 == 0 {
					if err := v.DeleteRange(1, i-5); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	calls := uint64(shards * (per*2 + per/10))
	if st.Writes != calls || st.Entries != shards*per {
		t.Fatalf("stats = %+v; want %d writes of %d entries", st, calls, shards*per)
	}
	t.Logf("%d calls in %d commits (%.1f shards per commit, %d lingered)", calls, st.Commits, float64(st.Shards)/float64(st.Commits), st.Lingers)
	if st.Commits >= calls {
		t.Fatalf("%d concurrent calls from %d shards took %d commits; want fewer", calls, shards, st.Commits)
	}
	s.Close()
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for n := range uint32(shards) {
		v := shardView(t, s2, n)
		wantIndexes(t, v, 36, per)
		if got, err := v.GetUint64([]byte("CurrentTerm")); err != nil || got != per {
			t.Fatalf("shard %d: term %d, %v; want %d", n, got, err, per)
		}
	}
}

func TestCloseDuringCommit(t *testing.T) {
	s, path := openTest(t, Options{MaxLinger: -1})
	a, b := shardView(t, s, 1), shardView(t, s, 2)
	h := holdCommitsOf(s)
	first := make(chan error, 1)
	go func() { first <- a.StoreLog(entry(1)) }()
	<-h.entered
	queued := make(chan error, 1)
	go func() { queued <- b.StoreLog(entry(1)) }()
	waitQueued(t, s, 1)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a commit was under way", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(h.proceed)
	// The commit under way completes; the write queued behind it is not
	// committed once the Store is closed.
	if err := <-first; err != nil {
		t.Fatalf("the write being committed at Close: %v", err)
	}
	if err := <-queued; !errors.Is(err, ErrClosed) {
		t.Fatalf("a write queued at Close = %v; want ErrClosed", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	wantIndexes(t, shardView(t, s2, 1), 1, 1)
	wantIndexes(t, shardView(t, s2, 2), 0, 0)
}

// TestWritersCommitThemselves checks the Store runs no goroutine of its
// own: a lone write is committed by its caller, with no hand-off.
func TestWritersCommitThemselves(t *testing.T) {
	s, _ := openTest(t, Options{MaxLinger: -1})
	v := shardView(t, s, 1)
	for i := uint64(1); i <= 10; i++ {
		storeRange(t, v, i, i)
	}
	if st := s.Stats(); st.Commits != 10 {
		t.Fatalf("stats = %+v; want 10 commits", st)
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(stacks, "sharedlog.(*Store)") {
		t.Fatalf("a goroutine runs in the Store with no write under way:\n%s", stacks)
	}
}

// TestAppendsFillLeafPages: raft appends at ever higher indexes, so a leaf
// page that splits never gets another key; bolt's default split (half
// full) would leave every page but the last half empty — twice the pages
// and branch entries, more of them read and rewritten on each commit. The
// log buckets fill their pages before splitting.
func TestAppendsFillLeafPages(t *testing.T) {
	s, _ := openTest(t, Options{})
	v := shardView(t, s, 3)
	data := bytes.Repeat([]byte{'x'}, 200)
	for i := uint64(1); i <= 600; i++ {
		if err := v.StoreLogs([]*raft.Log{{Index: i, Term: 1, Type: raft.LogCommand, Data: data}}); err != nil {
			t.Fatal(err)
		}
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		st := tx.Bucket(v.logs).Stats()
		fill := float64(st.LeafInuse) / float64(st.LeafPageN*s.db.Info().PageSize)
		t.Logf("%d keys in %d leaf pages, %.0f%% used", st.KeyN, st.LeafPageN, 100*fill)
		if st.KeyN != 600 || fill < 0.8 {
			t.Errorf("%d keys, leaf pages %.0f%% used: want 600 keys, pages at least 80%% used", st.KeyN, 100*fill)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
