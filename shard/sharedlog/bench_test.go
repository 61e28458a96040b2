package sharedlog

import (
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// BenchmarkStoreLogs appends one 256-byte entry at a time from each of 1 or
// 16 shards at once (each shard waits for its append, as raft does), on
// one raft-boltdb file per shard (what a Host uses by default) and on one
// shared Store with several lingers. appends/s counts every shard's.
//
//	go test -run '^$' -bench StoreLogs -benchtime 3s ./shard/sharedlog
func BenchmarkStoreLogs(b *testing.B) {
	for _, shards := range []int{1, 16} {
		b.Run(fmt.Sprintf("boltdb-per-shard/shards=%d", shards), func(b *testing.B) {
			dir := b.TempDir()
			stores := make([]raft.LogStore, shards)
			for i := range stores {
				s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, fmt.Sprintf("%d.db", i))})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				stores[i] = s
			}
			benchAppends(b, stores, 0, make([]byte, 256))
		})
		for _, linger := range []time.Duration{-1, 50 * time.Microsecond, 100 * time.Microsecond, 300 * time.Microsecond} {
			name := fmt.Sprintf("shared/linger=%v/shards=%d", linger, shards)
			if linger < 0 {
				name = fmt.Sprintf("shared/linger=none/shards=%d", shards)
			}
			b.Run(name, func(b *testing.B) {
				s, stores := openShards(b, Options{MaxLinger: linger}, shards)
				before := s.Stats()
				benchAppends(b, stores, 0, make([]byte, 256))
				st := s.Stats()
				commits := float64(st.Commits - before.Commits)
				b.ReportMetric(commits/float64(st.Writes-before.Writes), "commits/append")
				b.ReportMetric(float64(st.Shards-before.Shards)/commits, "shards/commit")
			})
		}
	}
}

// openShards opens a shared Store (closed at the benchmark's end) and n
// shards' views of it.
func openShards(b *testing.B, opts Options, n int) (*Store, []raft.LogStore) {
	s, err := Open(filepath.Join(b.TempDir(), "shared.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	stores := make([]raft.LogStore, n)
	for i := range stores {
		v, err := s.Shard(uint32(i))
		if err != nil {
			b.Fatal(err)
		}
		stores[i] = v
	}
	return s, stores
}

// benchAppends appends b.N entries of data in all, one at a time, from
// every store at once (each waits for its append, as raft does), at
// indexes after from.
func benchAppends(b *testing.B, stores []raft.LogStore, from uint64, data []byte) {
	per := max(1, b.N/len(stores))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, st := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= per; i++ {
				l := &raft.Log{Index: from + uint64(i), Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
				if err := st.StoreLogs([]*raft.Log{l}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(per*len(stores))/time.Since(start).Seconds(), "appends/s")
}

// BenchmarkStoreLogsSteady appends one entry of entryBytes at a time from
// each of 16 shards at once into logs already holding prefill entries
// each (a node under load keeps thousands per shard between snapshots), and
// reports the process's CPU time and the bytes allocated per append: the
// shared log's cost in a busy node, which the wall time (fsync-bound)
// hides.
//
//	go test -run '^$' -bench StoreLogsSteady -benchtime 20000x -benchmem ./shard/sharedlog
func BenchmarkStoreLogsSteady(b *testing.B) {
	const (
		shards     = 16
		prefill    = 6000
		entryBytes = 1024
	)
	_, stores := openShards(b, Options{}, shards)
	data := make([]byte, entryBytes)
	for _, v := range stores {
		logs := make([]*raft.Log, 0, 500)
		for idx := uint64(1); idx <= prefill; idx++ {
			logs = append(logs, &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data})
			if len(logs) == cap(logs) {
				if err := v.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
				logs = logs[:0]
			}
		}
	}
	cpu0 := cpuTime()
	benchAppends(b, stores, prefill, data)
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(max(1, b.N/shards)*shards), "cpu-µs/append")
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
