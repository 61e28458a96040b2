package sharedlog

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// View is one shard's log and stable store in a Store: a raft.LogStore and
// raft.StableStore with raft-boltdb's behaviour (FirstIndex and LastIndex 0
// when empty, GetLog of a missing index raft.ErrLogNotFound, Get of a
// missing key an error reading "not found"). Its writes wait for a commit
// shared with other shards'. Close releases the view, not the Store.
type View struct {
	s          *Store
	n          uint32
	logs, conf []byte // bucket names
	closed     atomic.Bool
}

var _ interface {
	raft.LogStore
	raft.StableStore
} = (*View)(nil)

func newView(s *Store, n uint32) *View {
	v := &View{s: s, n: n}
	v.logs, v.conf = bucketNames(n)
	return v
}

// Close releases the view; the Store stays open. Calls after it fail with
// ErrClosed. Further calls return nil.
func (v *View) Close() error {
	if v.closed.CompareAndSwap(false, true) {
		v.s.release(v.n)
	}
	return nil
}

func (v *View) view(f func(logs, conf *bbolt.Bucket) error) error {
	if v.closed.Load() {
		return ErrClosed
	}
	return v.s.db.View(func(tx *bbolt.Tx) error { return f(tx.Bucket(v.logs), tx.Bucket(v.conf)) })
}

func (v *View) write(entries int, f func(tx *bbolt.Tx) error) error {
	if v.closed.Load() {
		return ErrClosed
	}
	return v.s.write(v.n, entries, f)
}

// FirstIndex returns the first index in the log, 0 if it is empty.
func (v *View) FirstIndex() (idx uint64, err error) {
	err = v.view(func(logs, _ *bbolt.Bucket) error {
		if logs != nil {
			if k, _ := logs.Cursor().First(); k != nil {
				idx = keyUint64(k)
			}
		}
		return nil
	})
	return idx, err
}

// LastIndex returns the last index in the log, 0 if it is empty.
func (v *View) LastIndex() (idx uint64, err error) {
	err = v.view(func(logs, _ *bbolt.Bucket) error {
		if logs != nil {
			if k, _ := logs.Cursor().Last(); k != nil {
				idx = keyUint64(k)
			}
		}
		return nil
	})
	return idx, err
}

// GetLog reads the entry at index into log; raft.ErrLogNotFound if there is
// none.
func (v *View) GetLog(index uint64, log *raft.Log) error {
	return v.view(func(logs, _ *bbolt.Bucket) error {
		var val []byte
		if logs != nil {
			val = logs.Get(uint64Key(index))
		}
		if val == nil {
			return raft.ErrLogNotFound
		}
		return decodeLog(index, val, log)
	})
}

// StoreLog stores one entry.
func (v *View) StoreLog(log *raft.Log) error { return v.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores entries, all or none, durably once it returns nil. An
// entry at an index already stored replaces it.
func (v *View) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	keys := make([][]byte, len(logs))
	vals := make([][]byte, len(logs))
	for i, l := range logs {
		val, err := encodeLog(l)
		if err != nil {
			return err
		}
		keys[i], vals[i] = uint64Key(l.Index), val
	}
	return v.write(len(logs), func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(v.logs)
		if err != nil {
			return err
		}
		// Raft appends at ever higher indexes: a leaf that splits never
		// gets another key, so fill it before splitting (bolt's default
		// splits at half, leaving every page but the last half empty). Fewer
		// pages and branch entries to read and rewrite per commit
		// (BENCHMARKS.md, fourteenth session). Bolt still keeps at least
		// two keys on each side of a split, which bounds this for entries
		// of over a quarter page.
		b.FillPercent = 1.0
		for i := range keys {
			if err := b.Put(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRange deletes the entries from min to max inclusive, in
// transactions of at most Options.DeleteChunk entries, each committed with
// other shards' writes. A crash part way leaves the log contiguous: a range
// that reaches the end of the log (raft truncating a conflicting suffix) is
// deleted from its end down, any other (compaction of a prefix) from its
// start up.
func (v *View) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	chunk := v.s.opts.DeleteChunk
	for {
		var done bool
		err := v.write(0, func(tx *bbolt.Tx) error {
			b := tx.Bucket(v.logs)
			if b == nil {
				done = true
				return nil
			}
			var keys [][]byte
			keys, done = rangeChunk(b.Cursor(), min, max, chunk)
			for _, k := range keys {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || done {
			return err
		}
	}
}

// rangeChunk returns up to n keys within [min, max], from the end of the
// range if it reaches the end of the log, from its start otherwise, and
// whether they are the last ones in the range.
func rangeChunk(c *bbolt.Cursor, min, max uint64, n int) (keys [][]byte, done bool) {
	last, _ := c.Last()
	if last == nil {
		return nil, true
	}
	if keyUint64(last) <= max { // a suffix: delete from the end down
		for k := last; k != nil && keyUint64(k) >= min; k, _ = c.Prev() {
			if len(keys) == n {
				return keys, false
			}
			keys = append(keys, bytes.Clone(k))
		}
		return keys, true
	}
	for k, _ := c.Seek(uint64Key(min)); k != nil && keyUint64(k) <= max; k, _ = c.Next() {
		if len(keys) == n {
			return keys, false
		}
		keys = append(keys, bytes.Clone(k))
	}
	return keys, true
}

// Set stores a key of the stable store, durably once it returns nil.
func (v *View) Set(key, val []byte) error {
	k, b := bytes.Clone(key), bytes.Clone(val)
	if b == nil {
		b = []byte{}
	}
	return v.write(0, func(tx *bbolt.Tx) error {
		conf, err := tx.CreateBucketIfNotExists(v.conf)
		if err != nil {
			return err
		}
		return conf.Put(k, b)
	})
}

// Get returns a key's value; ErrKeyNotFound ("not found") if it is not set.
func (v *View) Get(key []byte) (val []byte, err error) {
	err = v.view(func(_, conf *bbolt.Bucket) error {
		if conf != nil {
			if b := conf.Get(key); b != nil {
				val = bytes.Clone(b)
				return nil
			}
		}
		return ErrKeyNotFound
	})
	return val, err
}

// SetUint64 stores a uint64 (8 bytes, big endian, as raft-boltdb does).
func (v *View) SetUint64(key []byte, val uint64) error { return v.Set(key, uint64Key(val)) }

// GetUint64 returns a value stored by SetUint64; ErrKeyNotFound if unset.
func (v *View) GetUint64(key []byte) (uint64, error) {
	b, err := v.Get(key)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("sharedlog: shard %d: key %q: %d bytes, not a uint64", v.n, key, len(b))
	}
	return keyUint64(b), nil
}
