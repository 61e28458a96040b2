// Package sharedlog keeps the Raft log and stable store of every shard of a
// node in one bbolt file, and commits the writes of shards that write at
// the same time together: one bolt transaction and one fsync for all of
// them (group commit). A node with one raft-boltdb file per shard pays one
// bolt commit and fsync per append per shard; the disk's fsync rate is then
// shared by every group and bounds them all.
//
// Store.Shard returns a shard's view, a raft.LogStore and raft.StableStore
// that behaves as raft-boltdb does for raft. Shards live in their own
// buckets ("shard-<n>-logs", "shard-<n>-conf"), created by the first write,
// so a shard that never wrote has no state. See shard/DESIGN.md, "One log
// store per node".
package sharedlog

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// Errors.
var (
	// ErrClosed is returned by every call on a closed Store or view.
	ErrClosed = errors.New("sharedlog: closed")
	// ErrFailed wraps the error of a commit that failed after the write
	// may have reached the disk (a failed fsync cannot be retried safely:
	// the kernel may have dropped the dirty pages). Every write after it
	// fails with it; reopen the file to go on.
	ErrFailed = errors.New("sharedlog: store failed")
	// ErrShardOpen is returned by DropShard while a view of the shard is
	// open.
	ErrShardOpen = errors.New("sharedlog: shard is open")
	// ErrKeyNotFound is Get's error for a missing key. raft compares
	// err.Error() with "not found", as raft-boltdb's error reads.
	ErrKeyNotFound = errors.New("not found")
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	// Timeout bounds the wait for the file lock (default 1s), so that a
	// second process on the same file fails instead of hanging.
	Timeout time.Duration
	// MaxLinger, if positive, is the longest a commit waits for more
	// shards' writes after the first one is queued, and only while several
	// shards have been writing at once. Zero or negative (the default):
	// never linger — measured with raft's real traffic, waiting cost more
	// than it batched (BENCHMARKS.md, "Node-wide log store").
	MaxLinger time.Duration
	// DeleteChunk is how many entries one transaction of DeleteRange
	// deletes at most (default 1024), so that raft's log compaction does
	// not hold every shard's appends behind one long transaction.
	DeleteChunk int
}

// Defaults of Options.
const (
	DefaultTimeout     = time.Second
	DefaultDeleteChunk = 1024
)

// Stats are cumulative counters of a Store's writes.
type Stats struct {
	// Commits is how many bolt transactions (each with its fsync)
	// committed; Failures how many failed (every caller in them failed).
	Commits, Failures uint64
	// Writes is how many calls (StoreLogs, Set, a DeleteRange chunk, a
	// drop) the commits carried; Entries how many log entries; Shards
	// the sum over commits of the distinct shards each wrote.
	Writes, Entries, Shards uint64
	// Lingers is how many commits waited for more writes.
	Lingers uint64
}

// Store is one bbolt file holding every shard's log and stable store. Its
// methods and its views' are safe for concurrent use.
type Store struct {
	db   *bbolt.DB
	opts Options

	mu      sync.Mutex
	queue   []*request
	closed  bool
	failed  error          // set by the first failed commit; sticky
	open    map[uint32]int // views open per shard
	wake    chan struct{}  // cap 1: the queue is not empty
	closing chan struct{}
	done    chan struct{} // the committer has stopped

	// commit commits a write transaction (tx.Commit); tests replace it.
	commit func(*bbolt.Tx) error

	commits, failures, writes, entries, shards, lingers atomic.Uint64
}

// request is one caller's write, applied inside a combined transaction.
type request struct {
	shard   uint32
	entries int
	apply   func(*bbolt.Tx) error
	done    chan error // buffered
}

// Open opens or creates the file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.DeleteChunk <= 0 {
		opts.DeleteChunk = DefaultDeleteChunk
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.Timeout})
	if err != nil {
		return nil, fmt.Errorf("sharedlog: opening %s: %w", path, err)
	}
	s := &Store{
		db: db, opts: opts,
		open:    make(map[uint32]int),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		commit:  (*bbolt.Tx).Commit,
	}
	go s.run()
	return s, nil
}

// Close stops the Store: queued writes fail with ErrClosed, the file
// closes. Views must not be used after it. Further calls return nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.closing)
	<-s.done
	return s.db.Close()
}

// Stats returns the counters so far.
func (s *Store) Stats() Stats {
	return Stats{
		Commits: s.commits.Load(), Failures: s.failures.Load(),
		Writes: s.writes.Load(), Entries: s.entries.Load(), Shards: s.shards.Load(),
		Lingers: s.lingers.Load(),
	}
}

// Shard returns shard n's view: its log and stable store. Opening it
// writes nothing. Close the view when done (the Store stays open); at most
// one view per shard is expected at a time, as raft owns its stores.
func (s *Store) Shard(n uint32) (*View, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.open[n]++
	return newView(s, n), nil
}

func (s *Store) release(n uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[n]--; s.open[n] <= 0 {
		delete(s.open, n)
	}
}

// DropShard deletes everything stored for shard n. It fails with
// ErrShardOpen while a view of n is open. Dropping a shard with nothing
// stored does nothing.
func (s *Store) DropShard(n uint32) error {
	s.mu.Lock()
	busy := s.open[n] > 0
	s.mu.Unlock()
	if busy {
		return fmt.Errorf("sharedlog: dropping shard %d: %w", n, ErrShardOpen)
	}
	logs, conf := bucketNames(n)
	return s.write(n, 0, func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{logs, conf} {
			if err := tx.DeleteBucket(b); err != nil && !errors.Is(err, bbolt.ErrBucketNotFound) {
				return err
			}
		}
		return nil
	})
}

// Shards lists the shards that have something stored, in increasing order.
func (s *Store) Shards() ([]uint32, error) {
	set := make(map[uint32]bool)
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			var n uint32
			var kind string
			if _, err := fmt.Sscanf(string(name), "shard-%d-%s", &n, &kind); err == nil {
				set[n] = true
			}
			return nil
		})
	})
	out := slices.Sorted(maps.Keys(set))
	return out, err
}

// write queues apply for the next combined transaction and waits for its
// commit. entries counts the log entries it writes (for Stats).
func (s *Store) write(shard uint32, entries int, apply func(*bbolt.Tx) error) error {
	r := &request{shard: shard, entries: entries, apply: apply, done: make(chan error, 1)}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.failed != nil:
		err := s.failed
		s.mu.Unlock()
		return err
	}
	s.queue = append(s.queue, r)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return <-r.done
}

// take removes and returns the queued requests.
func (s *Store) take(into []*request) []*request {
	s.mu.Lock()
	into = append(into, s.queue...)
	clear(s.queue)
	s.queue = s.queue[:0]
	s.mu.Unlock()
	return into
}

// run is the committer: it takes every queued write, lingers briefly for
// more only while several shards write at once, and commits them in one
// transaction.
func (s *Store) run() {
	defer close(s.done)
	var batch []*request
	seen := make(map[uint32]struct{})
	prevShards := 0 // distinct shards of the previous commit
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-s.wake:
		case <-s.closing:
			for _, r := range s.take(batch[:0]) {
				r.done <- ErrClosed
			}
			return
		}
		batch = s.take(batch[:0])
		if len(batch) == 0 {
			continue
		}
		distinct := countShards(batch, seen)
		// Linger only if the previous commit carried several shards'
		// writes (so others are likely on their way) and this one has
		// fewer so far; a lone busy shard never waits.
		if s.opts.MaxLinger > 0 && prevShards > 1 && distinct < prevShards {
			s.lingers.Add(1)
			timer.Reset(s.opts.MaxLinger)
		linger:
			for distinct < prevShards {
				select {
				case <-s.wake:
					batch = s.take(batch)
					distinct = countShards(batch, seen)
				case <-timer.C:
					break linger
				case <-s.closing:
					break linger
				}
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			batch = s.take(batch)
			distinct = countShards(batch, seen)
		}
		prevShards = distinct
		s.commitBatch(batch, distinct)
		clear(batch)
	}
}

func countShards(batch []*request, seen map[uint32]struct{}) int {
	clear(seen)
	for _, r := range batch {
		seen[r.shard] = struct{}{}
	}
	return len(seen)
}

// commitBatch applies every request in one transaction and commits it.
// Either all of them are committed or every caller gets the error.
func (s *Store) commitBatch(batch []*request, distinct int) {
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	err := failed
	if err == nil {
		err = s.commitTx(batch)
	}
	if err == nil {
		var entries int
		for _, r := range batch {
			entries += r.entries
		}
		s.commits.Add(1)
		s.writes.Add(uint64(len(batch)))
		s.entries.Add(uint64(entries))
		s.shards.Add(uint64(distinct))
	} else if failed == nil {
		s.failures.Add(1)
	}
	for _, r := range batch {
		r.done <- err
	}
}

func (s *Store) commitTx(batch []*request) error {
	tx, err := s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("sharedlog: begin: %w", err)
	}
	for _, r := range batch {
		if err := r.apply(tx); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("sharedlog: shard %d: %w", r.shard, err)
		}
	}
	if err := s.commit(tx); err != nil {
		_ = tx.Rollback() // bolt rolls back itself on most errors
		// bolt may have written some pages, and a failed fsync may have
		// dropped others: nothing can be trusted to be durable now.
		err = fmt.Errorf("%w: commit: %w", ErrFailed, err)
		s.mu.Lock()
		s.failed = err
		s.mu.Unlock()
		return err
	}
	return nil
}

func bucketNames(n uint32) (logs, conf []byte) {
	return fmt.Appendf(nil, "shard-%d-logs", n), fmt.Appendf(nil, "shard-%d-conf", n)
}
