package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

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
	n, err := binary.ReadUvarint(rr.br)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return err
		}
		return fmt.Errorf("record size: %w", err)
	}
	if n > maxRecordSize {
		return fmt.Errorf("record of %d bytes exceeds the maximum of %d", n, maxRecordSize)
	}
	if uint64(cap(rr.buf)) < n {
		rr.buf = make([]byte, n)
	}
	b := rr.buf[:n]
	if _, err := io.ReadFull(rr.br, b); err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	return rec.UnmarshalVT(b)
}
