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
//
// Writes are committed by their callers, not by a goroutine of the Store:
// a write that finds no commit under way commits everything queued (its
// own write first); writes that arrive meanwhile queue, and when the
// commit returns, the first of them is woken to commit the queue in turn.
// A lone writer thus commits in its own goroutine, with no hand-off to a
// committer and back (two wake-ups per append on every replica).
type Store struct {
	db   *bbolt.DB
	opts Options

	mu         sync.Mutex
	queue      []*request
	committing bool // a writer holds the committer's role
	closed     bool
	failed     error          // set by the first failed commit; sticky
	open       map[uint32]int // views open per shard
	idle       chan struct{}  // closed by the role's holder once closed and no longer committing
	wake       chan struct{}  // cap 1: a write was queued during a commit (for the linger)
	closing    chan struct{}

	// The committer's state, owned by whichever writer holds the role.
	batch      []*request
	seen       map[uint32]struct{}
	prevShards int // distinct shards of the previous commit
	timer      *time.Timer

	// commit commits a write transaction (tx.Commit); tests replace it.
	commit func(*bbolt.Tx) error

	commits, failures, writes, entries, shards, lingers atomic.Uint64
}

// request is one caller's write, applied inside a combined transaction.
type request struct {
	shard   uint32
	entries int
	apply   func(*bbolt.Tx) error
	done    chan error // buffered: its result, or errYourTurn first
}

// errYourTurn, sent on a queued request's done, hands its writer the
// committer's role; the result follows on the same channel.
var errYourTurn = errors.New("sharedlog: commit the queue")

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
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	s := &Store{
		db: db, opts: opts,
		open:    make(map[uint32]int),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		seen:    make(map[uint32]struct{}),
		timer:   timer,
		commit:  (*bbolt.Tx).Commit,
	}
	return s, nil
}

// Close stops the Store: a commit under way finishes, queued writes fail
// with ErrClosed, the file closes. Views must not be used after it.
// Further calls return nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var idle chan struct{}
	if s.committing {
		idle = make(chan struct{})
		s.idle = idle
	}
	s.mu.Unlock()
	close(s.closing)
	if idle != nil {
		<-idle
	}
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
// commit, committing it itself if no other writer is. entries counts the
// log entries it writes (for Stats).
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
	lead := !s.committing
	s.committing = true
	s.mu.Unlock()
	if !lead {
		select {
		case s.wake <- struct{}{}:
		default:
		}
		err := <-r.done
		if err != errYourTurn {
			return err
		}
	}
	s.lead()
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

// lead is a commit by the writer holding the committer's role: it takes
// every queued write (its own among them), lingers briefly for more only
// while several shards write at once, commits them in one transaction, and
// then hands the role to the first write queued meanwhile, or gives it up.
func (s *Store) lead() {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed { // queued writes are not committed after Close
		s.handOver()
		return
	}
	batch := s.take(s.batch[:0])
	distinct := countShards(batch, s.seen)
	// Linger only if the previous commit carried several shards' writes
	// (so others are likely on their way) and this one has fewer so far;
	// a lone busy shard never waits.
	if s.opts.MaxLinger > 0 && s.prevShards > 1 && distinct < s.prevShards {
		s.lingers.Add(1)
		s.timer.Reset(s.opts.MaxLinger)
	linger:
		for distinct < s.prevShards {
			select {
			case <-s.wake:
				batch = s.take(batch)
				distinct = countShards(batch, s.seen)
			case <-s.timer.C:
				break linger
			case <-s.closing:
				break linger
			}
		}
		if !s.timer.Stop() {
			select {
			case <-s.timer.C:
			default:
			}
		}
		batch = s.take(batch)
		distinct = countShards(batch, s.seen)
	}
	s.prevShards = distinct
	s.commitBatch(batch, distinct)
	clear(batch)
	s.batch = batch[:0]
	s.handOver()
}

// handOver passes the committer's role to the first queued write, or, with
// none queued, gives it up. A closed Store fails the queued writes instead.
func (s *Store) handOver() {
	select { // a wake-up for this commit's writes is stale now
	case <-s.wake:
	default:
	}
	s.mu.Lock()
	if s.closed {
		queued := s.queue
		s.queue = nil
		s.committing = false
		if s.idle != nil {
			close(s.idle)
			s.idle = nil
		}
		s.mu.Unlock()
		for _, r := range queued {
			r.done <- ErrClosed
		}
		return
	}
	if len(s.queue) == 0 {
		s.committing = false
		s.mu.Unlock()
		return
	}
	next := s.queue[0]
	s.mu.Unlock()
	next.done <- errYourTurn
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
