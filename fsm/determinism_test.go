package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	return buf.Bytes()
}

// raftLog encodes an entry the way the shard proposes it.
func raftLog(t testing.TB, index uint64, e *pb.Entry) *raft.Log {
	t.Helper()
	data, err := proto.Marshal(e)
	if err != nil {
		t.Fatalf("marshal entry %d: %v", index, err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// sameResults fails unless two replicas returned equal results.
func sameResults(t testing.TB, what string, seed uint64, ge *genEntry, want, got []*pb.Result) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("seed %d entry %d (%s): %s returned %d results, want %d", seed, ge.index, ge.kind, what, len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(want[i], got[i]) {
			t.Fatalf("seed %d entry %d (%s) command %d: %s diverged:\n  got  %v\n  want %v", seed, ge.index, ge.kind, i, what, got[i], want[i])
		}
	}
}

// TestDeterminism applies the same random log to two fresh state machines,
// one entry by entry through ApplyEntry and one in batches through raft's
// ApplyBatch with the encoded entries, and compares every result and the
// snapshot bytes after every batch. Go randomizes map iteration, so any
// dependence on map order shows up here.
func TestDeterminism(t *testing.T) {
	seqs, steps := 40, 300
	if testing.Short() {
		seqs = 8
	}
	steps = propSteps(steps)
	for _, seed := range propSeeds(seqs) {
		g := newGen(seed)
		a, b := New(propConfig(seed)), New(propConfig(seed))
		var batch []*raft.Log
		var pending []*genEntry
		var want [][]*pb.Result
		for i := 0; i < steps; i++ {
			ge := g.next(a)
			now0 := a.now
			ra := a.ApplyEntry(ge.index, ge.e)
			g.observe(ge, ra, now0)
			batch, pending, want = append(batch, raftLog(t, ge.index, ge.e)), append(pending, ge), append(want, ra)
			if len(batch) < 1+int(seed+uint64(i))%13 && i != steps-1 {
				continue
			}
			out := b.ApplyBatch(batch)
			if len(out) != len(batch) {
				t.Fatalf("seed %d: ApplyBatch returned %d results for %d logs", seed, len(out), len(batch))
			}
			for j, o := range out {
				rb, ok := o.([]*pb.Result)
				if !ok {
					t.Fatalf("seed %d entry %d: ApplyBatch did not return []*pb.Result", seed, pending[j].index)
				}
				sameResults(t, "raft ApplyBatch", seed, pending[j], want[j], rb)
			}
			if sa, sb := snapshotBytes(t, a), snapshotBytes(t, b); !bytes.Equal(sa, sb) {
				t.Fatalf("seed %d after entry %d: snapshots differ: %s", seed, ge.index, diffSnapshots(sa, sb))
			}
			batch, pending, want = batch[:0], pending[:0], want[:0]
		}
	}
}

// follower is a replica restored from a snapshot part-way through a log.
type follower struct {
	name string
	f    *FSM
}

// TestSnapshotRestoreContinues restores snapshots part-way through random
// logs and keeps the restored replicas applying the rest of the log beside
// the original: every result and every snapshot must stay identical, which
// catches state a snapshot does not capture or a restore rebuilds
// differently (indexes, timers, counters). Restores go into a fresh FSM
// (ReadSnapshot), into an FSM that already holds another shard's state
// (through raft's Restore, which must discard it), and into a follower
// that is already in step.
func TestSnapshotRestoreContinues(t *testing.T) {
	seqs, steps := 30, 300
	if testing.Short() {
		seqs = 6
	}
	steps = propSteps(steps)
	for _, seed := range propSeeds(seqs) {
		cfg := propConfig(seed)
		g := newGen(seed)
		live := New(cfg)

		// A replica full of unrelated state, to restore over.
		other := New(cfg)
		og := newGen(seed + 10_000)
		for i := 0; i < 150; i++ {
			ge, now0 := og.next(other), other.now
			og.observe(ge, other.ApplyEntry(ge.index, ge.e), now0)
		}

		var followers []follower
		for i := 0; i < steps; i++ {
			switch i {
			case steps / 3:
				snap := snapshotBytes(t, live)
				fresh := New(cfg)
				if err := fresh.ReadSnapshot(bytes.NewReader(snap)); err != nil {
					t.Fatalf("seed %d: ReadSnapshot at entry %d: %v", seed, g.index, err)
				}
				followers = append(followers, follower{fmt.Sprintf("fresh restore at entry %d", g.index), fresh})
			case steps / 2:
				snap := persist(t, live)
				if err := other.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
					t.Fatalf("seed %d: Restore at entry %d: %v", seed, g.index, err)
				}
				fresh := New(cfg)
				if err := fresh.ReadSnapshot(bytes.NewReader(snap)); err != nil {
					t.Fatalf("seed %d: ReadSnapshot at entry %d: %v", seed, g.index, err)
				}
				if a, b := snapshotBytes(t, other), snapshotBytes(t, fresh); !bytes.Equal(a, b) {
					t.Fatalf("seed %d: restoring over other state differs from a fresh restore: %s", seed, diffSnapshots(b, a))
				}
				followers = append(followers, follower{fmt.Sprintf("raft restore over other state at entry %d", g.index), other})
			case 2 * steps / 3:
				// Restore a follower from its own in-step state: a no-op.
				if len(followers) > 0 {
					fl := followers[0].f
					if err := fl.ReadSnapshot(bytes.NewReader(snapshotBytes(t, fl))); err != nil {
						t.Fatalf("seed %d: self restore: %v", seed, err)
					}
				}
			}
			if i == steps/3 || i == steps/2 || i == 2*steps/3 {
				want := snapshotBytes(t, live)
				for _, fl := range followers {
					if got := snapshotBytes(t, fl.f); !bytes.Equal(want, got) {
						t.Fatalf("seed %d, %s: restored snapshot differs: %s", seed, fl.name, diffSnapshots(want, got))
					}
					if err := checkInvariants(fl.f); err != nil {
						t.Fatalf("seed %d, %s: restored state: %v", seed, fl.name, err)
					}
				}
			}
			ge, now0 := g.next(live), live.now
			r := live.ApplyEntry(ge.index, ge.e)
			for _, fl := range followers {
				sameResults(t, fl.name, seed, ge, r, fl.f.ApplyEntry(ge.index, ge.e))
			}
			g.observe(ge, r, now0)
			if i%10 == 9 || i == steps-1 {
				want := snapshotBytes(t, live)
				for _, fl := range followers {
					if got := snapshotBytes(t, fl.f); !bytes.Equal(want, got) {
						t.Fatalf("seed %d after entry %d, %s: snapshots differ: %s", seed, ge.index, fl.name, diffSnapshots(want, got))
					}
				}
			}
		}
		for _, fl := range followers {
			if err := checkInvariants(fl.f); err != nil {
				t.Fatalf("seed %d, %s: %v", seed, fl.name, err)
			}
		}
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	failWrite         bool
	closed, cancelled bool
}

func (s *memSink) ID() string { return "mem" }

func (s *memSink) Write(p []byte) (int, error) {
	if s.failWrite {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}

func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

// persist takes a snapshot through raft's interface and returns its bytes.
func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("Persist left the sink closed=%v cancelled=%v, want closed", sink.closed, sink.cancelled)
	}
	if want := snapshotBytes(t, f); !bytes.Equal(sink.Bytes(), want) {
		t.Fatalf("persisted snapshot differs from WriteSnapshot")
	}
	return sink.Bytes()
}

func TestPersistCancelsOnWriteError(t *testing.T) {
	h := newHarness(t)
	h.basic(1, 1)
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	sink := &memSink{failWrite: true}
	if err := snap.Persist(sink); err == nil {
		t.Fatalf("Persist to a failing sink returned nil, want an error")
	}
	if !sink.cancelled {
		t.Fatalf("Persist did not cancel the sink after a write error")
	}
}

// randomState is an FSM after a random log, and its snapshot.
func randomState(t testing.TB, seed uint64, steps int) (*FSM, []byte) {
	t.Helper()
	g := newGen(seed)
	f := New(propConfig(seed))
	for i := 0; i < steps; i++ {
		ge, now0 := g.next(f), f.now
		g.observe(ge, f.ApplyEntry(ge.index, ge.e), now0)
	}
	return f, snapshotBytes(t, f)
}

// recordBounds are the offsets where snapshot records end.
func recordBounds(t testing.TB, b []byte) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	for off := 0; off < len(b); {
		size, n := protowire.ConsumeVarint(b[off:])
		if n < 0 {
			t.Fatalf("bad record length at %d", off)
		}
		off += n + int(size)
		out[off] = true
	}
	return out
}

// assertEmpty fails unless f holds exactly the state of a new FSM.
func assertEmpty(t testing.TB, what string, f *FSM, cfg Config) {
	t.Helper()
	if got, want := snapshotBytes(t, f), snapshotBytes(t, New(cfg)); !bytes.Equal(got, want) {
		t.Fatalf("%s: FSM not left empty after a failed restore: %s", what, diffSnapshots(want, got))
	}
}

// snapshotOf returns recs as a snapshot: delimited, with an end record that
// counts them, so that a restore reads them all and fails, if it does, for
// what they hold.
func snapshotOf(t testing.TB, recs ...*pb.SnapshotRecord) []byte {
	t.Helper()
	end := &pb.SnapshotRecord{Record: &pb.SnapshotRecord_End{End: &pb.SnapshotEnd{Records: uint64(len(recs))}}}
	return delimited(t, append(recs, end)...)
}

func delimited(t testing.TB, recs ...*pb.SnapshotRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range recs {
		if _, err := protodelim.MarshalTo(&buf, r); err != nil {
			t.Fatalf("marshal: %v", err)
		}
	}
	return buf.Bytes()
}

// TestRestoreRejectsBadSnapshots: a truncated or corrupt snapshot is an
// error (never a panic) and leaves the FSM empty, whatever it held before;
// and the FSM works normally afterwards.
func TestRestoreRejectsBadSnapshots(t *testing.T) {
	const seed = 3
	cfg := propConfig(seed)
	_, snap := randomState(t, seed, 200)
	bounds := recordBounds(t, snap)
	target, _ := randomState(t, seed+1, 100)

	hdr := func(v uint32) *pb.SnapshotRecord {
		return &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Header{Header: &pb.SnapshotHeader{Version: v, Shard: 1}}}
	}
	sess := func(st pb.SessionState, group, agent string) *pb.SnapshotRecord {
		return &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Session{Session: &pb.Session{
			SessionId: "1-1-0", MerchantId: "m", BuyerId: "b", State: st, GroupId: group, AgentId: agent}}}
	}
	merchant := &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Merchant{Merchant: &pb.MerchantRecord{MerchantId: "m"}}}
	cases := map[string][]byte{
		"empty":                     nil,
		"garbage":                   []byte("this is not a snapshot at all"),
		"record beyond max size":    protowire.AppendVarint(nil, maxRecordSize+1),
		"wrong version":             snapshotOf(t, hdr(SnapshotVersion+1)),
		"no header":                 snapshotOf(t, merchant),
		"session before merchant":   snapshotOf(t, hdr(SnapshotVersion), sess(pb.SessionState_SESSION_STATE_BOT, "", "")),
		"queued in unknown group":   snapshotOf(t, hdr(SnapshotVersion), merchant, sess(pb.SessionState_SESSION_STATE_QUEUED, "g", "")),
		"assigned to unknown agent": snapshotOf(t, hdr(SnapshotVersion), merchant, sess(pb.SessionState_SESSION_STATE_ASSIGNED, "", "a")),
		"cut in the length prefix":  append(append([]byte(nil), snap[:len(snap)-1]...), 0x80),
		"event id over 64 KiB": snapshotOf(t, hdr(SnapshotVersion), &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Event{Event: &pb.Event{
			Seq: 1, MerchantId: "m", BuyerId: strings.Repeat("b", maxEventID+1)}}}),
	}
	for cut := 1; cut < len(snap); cut++ {
		if !bounds[cut] && (cut < 200 || cut%37 == 0 || len(snap)-cut < 200) {
			cases[fmt.Sprintf("truncated at %d of %d", cut, len(snap))] = snap[:cut]
		}
	}
	for name, data := range cases {
		if err := target.Restore(io.NopCloser(bytes.NewReader(data))); err == nil {
			t.Fatalf("%s: Restore returned nil, want an error", name)
		}
		assertEmpty(t, name, target, cfg)
	}
	// The FSM is usable after a failed restore, and a good snapshot restores.
	h := &harness{t: t, f: target, now: 1_000_000}
	h.basic(2, 1)
	h.consult("m1", "b1")
	if err := checkInvariants(target); err != nil {
		t.Fatalf("after a failed restore: %v", err)
	}
	if err := target.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("Restore of the good snapshot: %v", err)
	}
	if got := snapshotBytes(t, target); !bytes.Equal(got, snap) {
		t.Fatalf("good snapshot restored differently: %s", diffSnapshots(snap, got))
	}
}

// TestRestoreRejectsBadEndedSessions: an ended session of a merchant the
// snapshot does not hold, or one ended twice, is an error; a well-formed
// one restores (the control).
func TestRestoreRejectsBadEndedSessions(t *testing.T) {
	hdr := &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Header{Header: &pb.SnapshotHeader{Version: SnapshotVersion, Shard: 1}}}
	merchant := &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Merchant{Merchant: &pb.MerchantRecord{MerchantId: "m"}}}
	endedRec := func(merchant, id string) *pb.SnapshotRecord {
		return &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Ended{Ended: &pb.Session{SessionId: id, MerchantId: merchant,
			BuyerId: "b", State: pb.SessionState_SESSION_STATE_ENDED, EndReason: pb.EndReason_END_REASON_BUYER_LEFT}}}
	}
	f := New(Config{Shard: 1})
	if err := f.ReadSnapshot(bytes.NewReader(snapshotOf(t, hdr, merchant, endedRec("m", "1-1-0"), endedRec("m", "1-1-1")))); err != nil {
		t.Fatalf("a well-formed snapshot: %v", err)
	}
	if s, err := f.Session("m", "1-1-1"); err != nil || s.State != pb.SessionState_SESSION_STATE_ENDED {
		t.Fatalf("the restored ended session: %v, %v", s, err)
	}
	if err := checkInvariants(f); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"ended session of an unknown merchant": snapshotOf(t, hdr, merchant, endedRec("m2", "1-1-0")),
		"ended session twice":                  snapshotOf(t, hdr, merchant, endedRec("m", "1-1-0"), endedRec("m", "1-1-0")),
	} {
		if err := f.ReadSnapshot(bytes.NewReader(data)); err == nil {
			t.Errorf("%s: restored, want an error", name)
		}
	}
}

// TestRestoreCorruptNeverPanics flips bytes all over a real snapshot: the
// restore may fail or (when the flip lands in a value) succeed, but must
// never panic, and a failure leaves the FSM empty.
func TestRestoreCorruptNeverPanics(t *testing.T) {
	const seed = 5
	cfg := propConfig(seed)
	_, snap := randomState(t, seed, 150)
	step := 3
	if testing.Short() {
		step = 17
	}
	f := New(cfg)
	for i := 0; i < len(snap); i += step {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			data := append([]byte(nil), snap...)
			data[i] ^= x
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("restore of a snapshot with byte %d of %d xor %#x panicked: %v\n%s", i, len(snap), x, r, debug.Stack())
					}
				}()
				if err := f.ReadSnapshot(bytes.NewReader(data)); err != nil {
					assertEmpty(t, fmt.Sprintf("byte %d xor %#x", i, x), f, cfg)
				}
			}()
		}
	}
}

// TestCopySessionCopiesEveryField sets every field of a pb.Session to a
// non-zero value and checks that copySession copies it: a field added to
// the message but not to the copy fails here.
func TestCopySessionCopiesEveryField(t *testing.T) {
	s := &pb.Session{}
	fillMessage(s.ProtoReflect())
	fields := s.ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); !s.ProtoReflect().Has(fd) {
			t.Fatalf("test did not set field %s", fd.Name())
		}
	}
	c := copySession(s)
	if !proto.Equal(c, s) {
		t.Fatalf("copySession lost fields:\n  got  %v\n  want %v", c, s)
	}
	if c == s {
		t.Fatalf("copySession returned its argument")
	}
}

// fillMessage sets every field of m to a non-zero value.
func fillMessage(m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
				e := l.NewElement()
				fillMessage(e.Message())
				l.Append(e)
			} else {
				l.Append(scalarValue(fd, i))
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			k := scalarValue(fd.MapKey(), i).MapKey()
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v := mp.NewValue()
				fillMessage(v.Message())
				mp.Set(k, v)
			} else {
				mp.Set(k, scalarValue(fd.MapValue(), i))
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			fillMessage(m.Mutable(fd).Message())
		default:
			m.Set(fd, scalarValue(fd, i))
		}
	}
}

func scalarValue(fd protoreflect.FieldDescriptor, i int) protoreflect.Value {
	n := int64(i + 7)
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(vals.Len() - 1).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(n)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(n))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d", fd.Name(), n))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{byte(n)})
	}
	panic(fmt.Sprintf("no value for kind %v", fd.Kind()))
}

// TestSnapshotIsTheStateWhenTaken: raft calls Snapshot on the applying
// goroutine and Persist later, beside new applies (FSM.Snapshot). What
// Persist writes must be the state when Snapshot returned, however much is
// applied meanwhile — enough here to rotate the dedup table's generations,
// drop whole blocks of the event ring and cycle the ring of ended sessions
// — and Persist must not race with those applies (go test -race): one
// snapshot is persisted after the applies, one while they run.
func TestSnapshotIsTheStateWhenTaken(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		g := newGen(seed)
		cfg := propConfig(seed)
		if seed > 4 {
			cfg.MaxEvents = 3*eventBlock + eventBlock/3 // a ring of several blocks
		}
		f := New(cfg)
		step := func() {
			ge, now0 := g.next(f), f.now
			g.observe(ge, f.ApplyEntry(ge.index, ge.e), now0)
		}
		applyEvents := func(n uint64) {
			for to := f.eventSeq + n; f.eventSeq < to; {
				step()
			}
		}
		applyEvents(uint64(cfg.MaxEvents) + eventBlock/2)
		take := func() ([]byte, raft.FSMSnapshot) {
			want := snapshotBytes(t, f)
			snap, err := f.Snapshot()
			if err != nil {
				t.Fatalf("seed %d: Snapshot: %v", seed, err)
			}
			return want, snap
		}
		check := func(what string, want []byte, got *memSink) {
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("seed %d: a snapshot persisted %s is not the state when Snapshot was called: %s",
					seed, what, diffSnapshots(want, got.Bytes()))
			}
			if bytes.Equal(snapshotBytes(t, f), want) {
				t.Fatalf("seed %d: the state did not change after the snapshot; the test proves nothing", seed)
			}
		}

		want, snap := take()
		applyEvents(3 * eventBlock)
		after := &memSink{}
		if err := snap.Persist(after); err != nil {
			t.Fatalf("seed %d: Persist: %v", seed, err)
		}
		check("after later applies", want, after)

		want, snap = take()
		during := &memSink{}
		persisted := make(chan error, 1)
		go func() { persisted <- snap.Persist(during) }()
		applyEvents(3 * eventBlock)
		if err := <-persisted; err != nil {
			t.Fatalf("seed %d: Persist: %v", seed, err)
		}
		check("during later applies", want, during)
	}
}
