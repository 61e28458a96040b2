package shard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Drop closes this node's replica of shard, if open, and deletes its
// directory with its log and snapshots. It is what a node does with a
// replica the shard no longer counts as a member: the data is gone for good,
// so the caller must have seen a committed configuration without this node
// first (a voter that lost its data could help elect a stale leader).
// Dropping a shard that has no directory does nothing. It fails with
// ErrShutdown after Close.
func (h *Host) Drop(shard uint32) error {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	h.mu.Lock()
	g, open, closed := h.groups[shard], h.groups[shard] != nil, h.closed
	h.mu.Unlock()
	if closed {
		return fmt.Errorf("shard %d: drop: %w", shard, ErrShutdown)
	}
	if open {
		err := g.close()
		if err == nil {
			// Before the replica leaves Groups(): a node that lists no
			// replica (drained) has no shard directory left either.
			err = os.RemoveAll(shardDir(h.cfg.DataDir, shard))
		}
		h.mu.Lock()
		delete(h.groups, shard)
		h.mu.Unlock()
		h.changed.notify()
		if err != nil {
			return fmt.Errorf("shard %d: drop: %w", shard, err)
		}
	} else if err := os.RemoveAll(shardDir(h.cfg.DataDir, shard)); err != nil {
		return fmt.Errorf("shard %d: drop: %w", shard, err)
	}
	if h.shared != nil {
		// After the directory, which says the replica exists: a crash in
		// between leaves an orphan that the next Open deletes.
		if err := h.shared.DropShard(shard); err != nil {
			return fmt.Errorf("shard %d: drop: %w", shard, err)
		}
	}
	return nil
}

// dropOrphan deletes, before a shard's directory is created, what the
// shared store may still hold for it from a Drop interrupted between
// deleting the directory and the shard's log.
func (h *Host) dropOrphan(shard uint32) error {
	if h.shared == nil {
		return nil
	}
	if _, err := os.Stat(shardDir(h.cfg.DataDir, shard)); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := h.shared.DropShard(shard); err != nil {
		return fmt.Errorf("shard %d: %w", shard, err)
	}
	return nil
}

// Stored lists the shards that have a directory in the data dir, open or
// not, in increasing order: after a restart, the replicas this node may
// still be a member of.
func (h *Host) Stored() ([]uint32, error) {
	entries, err := os.ReadDir(filepath.Join(h.cfg.DataDir, "shards"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, e := range entries {
		s, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || !e.IsDir() || strconv.FormatUint(s, 10) != e.Name() {
			continue
		}
		out = append(out, uint32(s))
	}
	slices.Sort(out)
	return out, nil
}
