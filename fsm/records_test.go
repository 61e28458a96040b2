package fsm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

var deterministic = protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}

// TestRecordsEncodeAsProtobuf: snapshot records written with the generated
// code are byte for byte what protobuf's deterministic marshalling writes,
// for every kind of record with every field set, and for whole snapshots of
// random states (decoded and re-encoded by protobuf itself).
func TestRecordsEncodeAsProtobuf(t *testing.T) {
	oneof := (&pb.SnapshotRecord{}).ProtoReflect().Descriptor().Oneofs().ByName("record")
	for i := 0; i < oneof.Fields().Len(); i++ {
		fd := oneof.Fields().Get(i)
		rec := &pb.SnapshotRecord{}
		fillMessage(rec.ProtoReflect().Mutable(fd).Message())
		got, err := appendRecord(nil, rec)
		if err != nil {
			t.Fatalf("%s: appendRecord: %v", fd.Name(), err)
		}
		var want bytes.Buffer
		if _, err := deterministic.MarshalTo(&want, rec); err != nil {
			t.Fatalf("%s: protodelim: %v", fd.Name(), err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%s record: generated code wrote\n  %x\nprotobuf writes\n  %x", fd.Name(), got, want.Bytes())
		}
	}
	for _, seed := range propSeeds(8) {
		_, snap := randomState(t, seed, propSteps(400))
		br := bufio.NewReader(bytes.NewReader(snap))
		var want bytes.Buffer
		records := 0
		for {
			rec := &pb.SnapshotRecord{}
			err := protodelim.UnmarshalFrom(br, rec)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("seed %d: record %d: %v", seed, records, err)
			}
			if _, err := deterministic.MarshalTo(&want, rec); err != nil {
				t.Fatalf("seed %d: record %d: %v", seed, records, err)
			}
			records++
		}
		if records < 3 {
			t.Fatalf("seed %d: only %d records: the state is too small to test anything", seed, records)
		}
		if !bytes.Equal(snap, want.Bytes()) {
			t.Fatalf("seed %d: snapshot differs from protobuf's encoding of its %d records: %s", seed, records, diffSnapshots(want.Bytes(), snap))
		}
	}
}

// TestRecordsHoldNoMaps: the generated code writes a map's entries in Go's
// map order, protobuf's deterministic marshalling sorts them; snapshots
// are byte-identical across replicas only while no record holds a map.
func TestRecordsHoldNoMaps(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		for i := 0; i < md.Fields().Len(); i++ {
			fd := md.Fields().Get(i)
			if fd.IsMap() {
				t.Errorf("%s is a map: snapshot records must not hold maps (records.go)", fd.FullName())
				continue
			}
			if fd.Message() != nil {
				walk(fd.Message())
			}
		}
	}
	walk((&pb.SnapshotRecord{}).ProtoReflect().Descriptor())
	if len(seen) < 5 {
		t.Fatalf("walked only %d message types", len(seen))
	}
}

// TestRecordReaderEnds: the reader tells a clean end (io.EOF) from one
// inside a record (io.ErrUnexpectedEOF), and refuses an oversized record
// before reading it.
func TestRecordReaderEnds(t *testing.T) {
	one, err := appendRecord(nil, &pb.SnapshotRecord{Record: &pb.SnapshotRecord_End{End: &pb.SnapshotEnd{Records: 300}}})
	if err != nil {
		t.Fatal(err)
	}
	read := func(b []byte) (int, error) {
		rr := recordReader{br: bufio.NewReader(bytes.NewReader(b))}
		for n := 0; ; n++ {
			rec := &pb.SnapshotRecord{}
			if err := rr.next(rec); err != nil {
				return n, err
			}
			if rec.GetEnd().GetRecords() != 300 {
				t.Fatalf("decoded %v", rec)
			}
		}
	}
	if n, err := read(append(append([]byte{}, one...), one...)); n != 2 || !errors.Is(err, io.EOF) {
		t.Fatalf("two whole records: read %d, then %v; want 2, then EOF", n, err)
	}
	for cut := 1; cut < len(one); cut++ {
		if n, err := read(one[:cut]); n != 0 || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("record cut at %d of %d: read %d, then %v; want 0, then unexpected EOF", cut, len(one), n, err)
		}
	}
	if n, err := read(protowire.AppendVarint(nil, maxRecordSize+1)); n != 0 || err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("oversized record: read %d, then %v; want a size error", n, err)
	}
	if n, err := read([]byte{0x80}); n != 0 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("size cut short: read %d, then %v; want unexpected EOF", n, err)
	}
}

// TestSessionRecordsBothWays: session and ended records are decoded
// straight into sessions (sessionRecord) when they are that one field, as
// this package writes them, and through the generic decode otherwise (here:
// each with an unknown field after it); both restore the same state.
func TestSessionRecordsBothWays(t *testing.T) {
	for _, seed := range propSeeds(6) {
		_, snap := randomState(t, seed, propSteps(400))
		rr := recordReader{br: bufio.NewReader(bytes.NewReader(snap))}
		var padded []byte
		fast := 0
		for {
			b, err := rr.raw()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, _, ok, err := sessionRecord(b); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			} else if ok {
				fast++
				b = protowire.AppendVarint(protowire.AppendTag(append([]byte{}, b...), 99, protowire.VarintType), 1)
				if _, _, ok, _ := sessionRecord(b); ok {
					t.Fatalf("seed %d: a record with a second field took the fast path", seed)
				}
			}
			padded = protowire.AppendBytes(padded, b)
		}
		if fast == 0 {
			t.Fatalf("seed %d: no session records in the snapshot", seed)
		}
		a, b := New(propConfig(seed)), New(propConfig(seed))
		if err := a.ReadSnapshot(bytes.NewReader(snap)); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if err := b.ReadSnapshot(bytes.NewReader(padded)); err != nil {
			t.Fatalf("seed %d: padded: %v", seed, err)
		}
		if got, want := snapshotBytes(t, b), snapshotBytes(t, a); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: %d session records decoded both ways restore different states: %s", seed, fast, diffSnapshots(want, got))
		}
		if !bytes.Equal(snapshotBytes(t, a), snap) {
			t.Fatalf("seed %d: restoring and snapshotting again changed the snapshot: %s", seed, diffSnapshots(snap, snapshotBytes(t, a)))
		}
	}
}

// An ended session kept encoded is written as the very record
// appendRecord writes for it.
func TestEndedRecordsAsAppendRecord(t *testing.T) {
	f, _ := randomState(t, 11, 400)
	n := 0
	f.ended.each(func(_, id, enc []byte) bool {
		s := &pb.Session{}
		if err := s.UnmarshalVT(enc); err != nil {
			t.Fatal(err)
		}
		want, err := appendRecord([]byte{7}, &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Ended{Ended: s}})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendEndedRecord([]byte{7}, enc); !bytes.Equal(got, want) {
			t.Fatalf("ended session %q: wrote %x, want %x", id, got, want)
		}
		n++
		return true
	})
	if n == 0 {
		t.Fatal("the random state has no ended sessions")
	}
}
