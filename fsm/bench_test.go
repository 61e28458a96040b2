package fsm

import (
	"bytes"
	"math/rand"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// benchSetup builds a merchant with one push group of n online agents with
// limit 5 and returns the harness.
func benchSetup(b *testing.B, agents int) *harness {
	h := newHarness(b)
	h.basic(0, 0)
	for i := 0; i < agents; i++ {
		h.agent("m1", "a"+strconv.Itoa(i), 5, "g1")
	}
	return h
}

func encodeEntry(b *testing.B, cmds ...*pb.Command) []byte {
	data, err := proto.Marshal(&pb.Entry{Version: EntryVersion, Commands: cmds})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkApplyConsultEnd: one consult then one end per iteration, each an
// encoded log entry applied through Apply (decode + apply). Commands are
// encoded ahead in chunks with the timer stopped. Reports commands/s.
func BenchmarkApplyConsultEnd(b *testing.B) {
	for _, n := range []int{5, 50, 500, 5000} {
		b.Run("agents="+strconv.Itoa(n), func(b *testing.B) {
			h := benchSetup(b, n)
			// Encode every entry first into one pointer-free buffer, so the
			// timed loop (and the GC) sees only what Apply does.
			var blob []byte
			offs := make([]int, 0, 2*b.N+1)
			base := h.index
			for i := 0; i < b.N; i++ {
				h.now++
				h.index++
				consult := h.cmd(&pb.Consult{MerchantId: "m1", BuyerId: "b" + strconv.Itoa(i), QuestionType: "order"})
				offs = append(offs, len(blob))
				blob = append(blob, encodeEntry(b, consult)...)
				sid := "1-" + strconv.FormatUint(h.index, 10) + "-0"
				h.index++
				end := h.cmd(&pb.End{MerchantId: "m1", SessionId: sid, Reason: pb.EndReason_END_REASON_AGENT_ENDED})
				offs = append(offs, len(blob))
				blob = append(blob, encodeEntry(b, end)...)
			}
			offs = append(offs, len(blob))
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < 2*b.N; i++ {
				l := raft.Log{Index: base + uint64(i) + 1, Type: raft.LogCommand, Data: blob[offs[i]:offs[i+1]]}
				res := h.f.Apply(&l).([]*pb.Result)
				if res[0].Error != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
					b.Fatalf("entry %d: %v", l.Index, ResultError(res[0]))
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "cmds/s")
		})
	}
}

// BenchmarkSnapshotRestore: a shard with 100,000 open sessions (assigned
// and queued) is snapshotted and restored; reports bytes and time of each.
func BenchmarkSnapshotRestore(b *testing.B) {
	const sessions = 100_000
	h := newHarness(b)
	h.merchant("m1", nil)
	h.group("m1", "g1", pb.GroupMode_GROUP_MODE_PUSH)
	h.merchant("m1", &pb.MerchantSettings{QueueEnabled: true, MaxQueueLength: MaxQueueLength, DefaultGroupId: "g1", IdleTimeoutMs: 600_000, MaxWaitMs: 600_000})
	for i := 0; i < 1000; i++ {
		h.agent("m1", "a"+strconv.Itoa(i), 50, "g1")
	}
	cmds := make([]*pb.Command, 0, 1000)
	for i := 0; i < sessions; i++ {
		cmds = append(cmds, h.cmd(&pb.Consult{MerchantId: "m1", BuyerId: "b" + strconv.Itoa(i), UserLevel: uint32(i % 4)}))
		if len(cmds) == cap(cmds) {
			h.apply(cmds...)
			cmds = cmds[:0]
		}
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	b.ResetTimer()
	var pauseNs, snapNs, restoreNs int64
	for i := 0; i < b.N; i++ {
		buf.Reset()
		data, pause, persist := snapshotData(b, h.f)
		pauseNs += pause
		snapNs += pause + persist
		start := nowNs()
		g := New(Config{Shard: 1})
		if err := g.ReadSnapshot(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		restoreNs += nowNs() - start
		buf.Write(data)
	}
	b.ReportMetric(float64(buf.Len()), "bytes")
	b.ReportMetric(float64(pauseNs)/float64(b.N)/1e6, "pause-ms")
	b.ReportMetric(float64(snapNs)/float64(b.N)/1e6, "snapshot-ms")
	b.ReportMetric(float64(restoreNs)/float64(b.N)/1e6, "restore-ms")
	if st, _ := h.f.Stats("m1"); st.Assigned+st.Queued != sessions {
		b.Fatalf("expected %d open sessions, have %d", sessions, st.Assigned+st.Queued)
	}
}

func nowNs() int64 { return time.Now().UnixNano() }

// snapshotData takes a snapshot through raft's interface (Snapshot, then
// Persist) and returns its bytes and how long each step took in ns: the
// pause (Snapshot, while nothing is applied) and Persist.
func snapshotData(b *testing.B, f *FSM) (data []byte, pauseNs, persistNs int64) {
	start := nowNs()
	snap, err := f.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	pauseNs = nowNs() - start
	start = nowNs()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		b.Fatal(err)
	}
	snap.Release()
	return sink.Bytes(), pauseNs, nowNs() - start
}

// BenchmarkCapacity loads what one node of a 3-node cluster holds when the
// cluster serves 100,000 agents and 1,000,000 open sessions: with 3
// replicas of 16 shards on 3 nodes every node holds every shard, so 16
// state machines with 5,000 merchants between them, each with 20 agents
// of limit 5 (100 assigned) and 200 buyers (100 more queued). It reports
// the Go heap the state takes after a GC, the snapshot bytes of all
// shards, and the time to snapshot and restore them all, one after the
// other (raft does them per shard, in parallel). Run it with -benchtime 1x.
func BenchmarkCapacity(b *testing.B) {
	const shards, merchants, agentsPer, buyersPer = 16, 5_000, 20, 200
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		hs := make([]*harness, shards)
		for s := range hs {
			hs[s] = newHarness(b)
			hs[s].f = New(Config{Shard: uint32(s)})
		}
		cmds := make([]*pb.Command, 0, 512)
		for m := 0; m < merchants; m++ {
			h := hs[m%shards]
			mid := "merchant-" + strconv.Itoa(m)
			h.merchant(mid, nil)
			h.group(mid, "g1", pb.GroupMode_GROUP_MODE_PUSH)
			h.merchant(mid, &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", IdleTimeoutMs: 600_000, MaxWaitMs: 600_000})
			for a := 0; a < agentsPer; a++ {
				h.agent(mid, "agent-"+strconv.Itoa(a), 5, "g1")
			}
			for c := 0; c < buyersPer; c++ {
				cmds = append(cmds, h.cmd(&pb.Consult{MerchantId: mid, BuyerId: "buyer-" + strconv.Itoa(c), UserLevel: uint32(c % 4)}))
			}
			for _, r := range h.apply(cmds...) {
				if r.Error != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
					b.Fatalf("%s: %v", mid, ResultError(r))
				}
			}
			cmds = cmds[:0]
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		var open uint64
		for _, h := range hs {
			for _, mid := range h.f.Merchants() {
				st, _ := h.f.Stats(mid)
				open += st.Assigned + st.Queued
			}
		}
		if open != merchants*buyersPer {
			b.Fatalf("%d open sessions, want %d", open, merchants*buyersPer)
		}
		var size, snapNs, restoreNs int64
		for _, h := range hs {
			data, pause, persist := snapshotData(b, h.f)
			snapNs += pause + persist
			size += int64(len(data))
			start := nowNs()
			if err := New(Config{}).ReadSnapshot(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			restoreNs += nowNs() - start
		}
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(size)/(1<<20), "snapshot-MiB")
		b.ReportMetric(float64(snapNs)/1e6, "snapshot-ms")
		b.ReportMetric(float64(restoreNs)/1e6, "restore-ms")
		runtime.KeepAlive(hs)
	}
}

// BenchmarkSnapshotPause: a busy W1-like shard — 20 merchants of 20 agents,
// 60,000 consults each ended at once, so the dedup table, the event log
// and the ring of ended sessions hold what minutes of load leave in them —
// is snapshotted the way raft does it: Snapshot on the FSM goroutine, which
// applies nothing meanwhile (pause-ms), then Persist beside new applies
// (persist-ms).
func BenchmarkSnapshotPause(b *testing.B) {
	h := newHarness(b)
	const merchants, pairs = 20, 60_000
	for m := 0; m < merchants; m++ {
		mid := "m" + strconv.Itoa(m)
		h.merchant(mid, nil)
		h.group(mid, "g1", pb.GroupMode_GROUP_MODE_PUSH)
		h.merchant(mid, &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1"})
		for a := 0; a < 20; a++ {
			h.agent(mid, "a"+strconv.Itoa(a), 5, "g1")
		}
	}
	for i := 0; i < pairs; i++ {
		mid := "m" + strconv.Itoa(i%merchants)
		h.now++
		r := h.do(&pb.Consult{MerchantId: mid, BuyerId: "b" + strconv.Itoa(i)})
		if r.Error != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
			b.Fatalf("consult %d: %v", i, ResultError(r))
		}
		if r.GetOutcome() == pb.Outcome_OUTCOME_ASSIGNED {
			h.ok(&pb.End{MerchantId: mid, SessionId: r.SessionId, Reason: pb.EndReason_END_REASON_AGENT_ENDED})
		}
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	var pauseNs, persistNs, size int64
	for i := 0; i < b.N; i++ {
		data, pause, persist := snapshotData(b, h.f)
		pauseNs += pause
		persistNs += persist
		size = int64(len(data))
	}
	b.ReportMetric(float64(pauseNs)/float64(b.N)/1e6, "pause-ms")
	b.ReportMetric(float64(persistNs)/float64(b.N)/1e6, "persist-ms")
	b.ReportMetric(float64(size)/(1<<20), "MiB")
	b.ReportMetric(float64(h.f.dedup.len()), "dedup")
	b.ReportMetric(float64(h.f.events.len()), "events")
	b.ReportMetric(float64(h.f.ended.len()), "ended")
}

// BenchmarkApplyW1: workload W1 (BENCHMARKS.md) as a shard applies it —
// 63 merchants (1,000 / 16) of 20 online agents with limit 5, queue on
// (max 1,000), picked by Zipf (s=1.1, v=1); every entry carries 27 commands
// (what W1 at 1,024 clients packs per Raft entry): the ends of the previous
// entry's assigned sessions, then new consults. A warm-up of 200,000
// commands per shard first fills what minutes of W1 leave behind (queues,
// the de-dup table, the event log, ended sessions). shards=1 is one
// shard's state machine alone; shards=16 is what a node of the default
// cluster applies: sixteen of them, one entry each in turn, so that each
// entry finds its state machine's memory as cold as in a node (every node
// holds a replica of every shard). Reports ns per command. Commands are
// encoded with the timer stopped.
func BenchmarkApplyW1(b *testing.B) {
	for _, n := range []int{1, 16} {
		// Set up once: the testing package calls the function again for
		// each b.N it tries, and a state that W1 kept applying to is as
		// good a start as a fresh one.
		var shards []*w1Shard
		b.Run("shards="+strconv.Itoa(n), func(b *testing.B) {
			if shards == nil {
				for i := range n {
					shards = append(shards, newW1Shard(b, int64(i+1)))
				}
			}
			for _, s := range shards {
				s.b, s.h.t = b, b // this round's, for Fatalf
			}
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				s := shards[i%n]
				b.StopTimer()
				s.h.now++
				data := s.next()
				b.StartTimer()
				s.apply(data)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*w1PerEntry), "ns/cmd")
		})
	}
}

const w1PerEntry = 27

// w1Shard is one shard's state machine under W1 for BenchmarkApplyW1: its
// merchants, the sessions its last entry assigned (ended by the next) and
// its Zipf source.
type w1Shard struct {
	b      *testing.B
	h      *harness
	zipf   *rand.Zipf
	ends   []w1Open
	owner  []string // the merchant of each command of the entry
	buyers int
}

type w1Open struct{ merchant, session string }

// newW1Shard sets up a shard's 63 merchants and warms it up.
func newW1Shard(b *testing.B, seed int64) *w1Shard {
	const merchants, agents, warm = 63, 20, 200_000
	s := &w1Shard{b: b, h: newHarness(b), owner: make([]string, w1PerEntry)}
	for m := range merchants {
		mid := "m" + strconv.Itoa(m)
		s.h.merchant(mid, nil)
		s.h.group(mid, "g1", pb.GroupMode_GROUP_MODE_PUSH)
		s.h.merchant(mid, &pb.MerchantSettings{QueueEnabled: true, MaxQueueLength: 1000, DefaultGroupId: "g1"})
		for a := range agents {
			s.h.agent(mid, "a"+strconv.Itoa(a), 5, "g1")
		}
	}
	s.zipf = rand.NewZipf(rand.New(rand.NewSource(seed)), 1.1, 1, merchants-1)
	for range warm / w1PerEntry {
		s.h.now++
		s.apply(s.next())
	}
	return s
}

// next encodes the shard's next entry.
func (s *w1Shard) next() []byte {
	cmds := make([]*pb.Command, 0, w1PerEntry)
	for _, e := range s.ends {
		s.owner[len(cmds)] = e.merchant
		cmds = append(cmds, s.h.cmd(&pb.End{MerchantId: e.merchant, SessionId: e.session, Reason: pb.EndReason_END_REASON_AGENT_ENDED}))
	}
	for len(cmds) < w1PerEntry {
		s.buyers++
		mid := "m" + strconv.FormatUint(s.zipf.Uint64(), 10)
		s.owner[len(cmds)] = mid
		cmds = append(cmds, s.h.cmd(&pb.Consult{MerchantId: mid, BuyerId: "b" + strconv.Itoa(s.buyers)}))
	}
	return encodeEntry(s.b, cmds...)
}

// apply applies one entry and notes the sessions it assigned.
func (s *w1Shard) apply(data []byte) {
	s.h.index++
	l := raft.Log{Index: s.h.index, Type: raft.LogCommand, Data: data}
	res := s.h.f.Apply(&l).([]*pb.Result)
	s.ends = s.ends[:0]
	for i, r := range res {
		if r.Error != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
			s.b.Fatalf("entry %d, command %d: %v", l.Index, i, ResultError(r))
		}
		if r.GetOutcome() == pb.Outcome_OUTCOME_ASSIGNED && r.SessionId != "" {
			s.ends = append(s.ends, w1Open{s.owner[i], r.SessionId})
		}
	}
}
