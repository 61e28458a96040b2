package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Snapshot records are length-delimited protobuf messages: the record's
// size as a varint, then the record (protodelim's format). They are
// encoded and decoded with the generated vtproto code, not protobuf's
// reflection: Snapshot encodes every open session while nothing is
// applied, and a restarting node decodes every record before it serves
// (BENCHMARKS.md, "Snapshot records without reflection").
//
// The bytes are those of protobuf's deterministic marshalling: fields in
// field-number order, and no record holds a map (whose order is what
// Deterministic fixes). TestRecordsEncodeAsProtobuf holds the two equal.

// appendRecord appends r, length-delimited, to b.
func appendRecord(b []byte, r *pb.SnapshotRecord) ([]byte, error) {
	n := r.SizeVT()
	b = binary.AppendUvarint(b, uint64(n))
	start := len(b)
	b = append(b, make([]byte, n)...)
	if _, err := r.MarshalToSizedBufferVT(b[start:]); err != nil {
		return nil, err
	}
	return b, nil
}

// appendEndedRecord appends the record of an ended session already
// encoded (endedStore): the bytes appendRecord would write for a
// SnapshotRecord holding it as its ended field, without decoding it.
func appendEndedRecord(b, session []byte) []byte {
	n := protowire.SizeTag(endedField) + protowire.SizeBytes(len(session))
	b = binary.AppendUvarint(b, uint64(n))
	b = protowire.AppendTag(b, endedField, protowire.BytesType)
	return protowire.AppendBytes(b, session)
}

// recordWriter writes length-delimited records through one scratch buffer.
type recordWriter struct {
	w       io.Writer
	scratch []byte
}

func (rw *recordWriter) write(r *pb.SnapshotRecord) error {
	b, err := appendRecord(rw.scratch[:0], r)
	if err != nil {
		return err
	}
	rw.scratch = b
	_, err = rw.w.Write(b)
	return err
}

// recordReader reads length-delimited records of at most maxRecordSize
// bytes through one buffer (decoding copies what it keeps).
type recordReader struct {
	br  *bufio.Reader
	buf []byte
}

// next decodes the next record into rec. It returns io.EOF only when the
// input ends exactly before a record, io.ErrUnexpectedEOF when it ends
// inside one.
func (rr *recordReader) next(rec *pb.SnapshotRecord) error {
	b, err := rr.raw()
	if err != nil {
		return err
	}
	return rec.UnmarshalVT(b)
}

// raw reads the next record's bytes, valid until the next call; errors as
// next's.
func (rr *recordReader) raw() ([]byte, error) {
	n, err := binary.ReadUvarint(rr.br)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		return nil, fmt.Errorf("record size: %w", err)
	}
	if n > maxRecordSize {
		return nil, fmt.Errorf("record of %d bytes exceeds the maximum of %d", n, maxRecordSize)
	}
	if uint64(cap(rr.buf)) < n {
		rr.buf = make([]byte, n)
	}
	b := rr.buf[:n]
	if _, err := io.ReadFull(rr.br, b); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// The field numbers of SnapshotRecord's session and ended records.
var (
	sessionField = fieldNumber("session")
	endedField   = fieldNumber("ended")
)

func fieldNumber(name protoreflect.Name) protowire.Number {
	fd := (&pb.SnapshotRecord{}).ProtoReflect().Descriptor().Fields().ByName(name)
	if fd == nil {
		panic("fsm: SnapshotRecord has no field " + string(name))
	}
	return fd.Number()
}

// sessionRecord decodes a record that is a session or an ended session
// and nothing else — nearly every record of a large snapshot — straight
// into a new session, sparing the generic decode's message and the copy
// out of it. ok is false for any other record, which the caller decodes
// as a SnapshotRecord.
func sessionRecord(b []byte) (s *session, ended, ok bool, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || typ != protowire.BytesType || (num != sessionField && num != endedField) {
		return nil, false, false, nil
	}
	v, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return nil, false, false, nil
	}
	s = &session{}
	if err := s.Session.UnmarshalVT(v); err != nil {
		return nil, false, false, err
	}
	return s, num == endedField, true, nil
}
