package fsm

import (
	"bufio"
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// SnapshotRecords decodes a snapshot (WriteSnapshot's format) into its
// records, in order, stopping at the first record that does not decode.
func SnapshotRecords(b []byte) []*pb.SnapshotRecord {
	var out []*pb.SnapshotRecord
	rr := recordReader{br: bufio.NewReader(bytes.NewReader(b))}
	for {
		rec := &pb.SnapshotRecord{}
		if err := rr.next(rec); err != nil {
			return out
		}
		out = append(out, rec)
	}
}

// DiffSnapshots compares two snapshots record by record and describes up
// to max differences (a in "-" lines, b in "+" lines); nil when their
// records are equal. It is what a person reads when two replicas that
// should be identical are not.
func DiffSnapshots(a, b []byte, max int) []string {
	ra, rb := SnapshotRecords(a), SnapshotRecords(b)
	var out []string
	text := func(r *pb.SnapshotRecord) string {
		return prototext.MarshalOptions{}.Format(r)
	}
	for i := 0; (i < len(ra) || i < len(rb)) && len(out) < max; i++ {
		switch {
		case i >= len(ra):
			out = append(out, fmt.Sprintf("record %d only in b:\n+ %s", i, text(rb[i])))
		case i >= len(rb):
			out = append(out, fmt.Sprintf("record %d only in a:\n- %s", i, text(ra[i])))
		case !proto.Equal(ra[i], rb[i]):
			out = append(out, fmt.Sprintf("record %d:\n- %s\n+ %s", i, text(ra[i]), text(rb[i])))
		}
	}
	if len(out) == 0 && !bytes.Equal(a, b) {
		out = append(out, "records equal, bytes differ")
	}
	return out
}
