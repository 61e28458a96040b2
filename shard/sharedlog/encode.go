package sharedlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// A log entry is stored under its index (8 bytes, big endian, as
// raft-boltdb keys it) as:
//
//	version  byte    (1)
//	term     uvarint
//	type     byte    (raft.LogType)
//	appended varint  (AppendedAt as Unix nanoseconds; 0 for the zero time)
//	data     uvarint length, bytes
//	ext      uvarint length, bytes
//
// The index is not repeated in the value. AppendedAt keeps its instant, not
// its location or monotonic reading (raft-boltdb's msgpack keeps no more);
// times outside what Unix nanoseconds can hold (years 1678–2262) are
// refused rather than stored wrong.
const encodingVersion = 1

// errCorrupt is returned for a stored value this package cannot decode.
var errCorrupt = errors.New("sharedlog: corrupt log entry")

func encodeLog(l *raft.Log) ([]byte, error) {
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
		if !time.Unix(0, at).Equal(l.AppendedAt) || at == 0 {
			return nil, fmt.Errorf("sharedlog: entry %d: AppendedAt %v cannot be stored", l.Index, l.AppendedAt)
		}
	}
	buf := make([]byte, 0, 1+binary.MaxVarintLen64*4+1+len(l.Data)+len(l.Extensions))
	buf = append(buf, encodingVersion)
	buf = binary.AppendUvarint(buf, l.Term)
	buf = append(buf, byte(l.Type))
	buf = binary.AppendVarint(buf, at)
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	return buf, nil
}

// decodeLog fills l from a stored value. val may be bolt's memory: what l
// keeps is copied.
func decodeLog(index uint64, val []byte, l *raft.Log) error {
	if len(val) < 1 || val[0] != encodingVersion {
		return fmt.Errorf("%w: index %d: unknown version", errCorrupt, index)
	}
	p := val[1:]
	term, n := binary.Uvarint(p)
	if n <= 0 || len(p) < n+1 {
		return fmt.Errorf("%w: index %d: term", errCorrupt, index)
	}
	p = p[n:]
	typ := raft.LogType(p[0])
	p = p[1:]
	at, n := binary.Varint(p)
	if n <= 0 {
		return fmt.Errorf("%w: index %d: time", errCorrupt, index)
	}
	p = p[n:]
	data, p, ok := readBytes(p)
	if !ok {
		return fmt.Errorf("%w: index %d: data", errCorrupt, index)
	}
	ext, p, ok := readBytes(p)
	if !ok || len(p) != 0 {
		return fmt.Errorf("%w: index %d: extensions", errCorrupt, index)
	}
	// One allocation for both; nil stays nil, as msgpack decodes it.
	var own []byte
	if len(data)+len(ext) > 0 {
		own = make([]byte, 0, len(data)+len(ext))
	}
	*l = raft.Log{Index: index, Term: term, Type: typ}
	if len(data) > 0 {
		own = append(own, data...)
		l.Data = own[:len(data):len(data)]
	}
	if len(ext) > 0 {
		own = append(own, ext...)
		l.Extensions = own[len(own)-len(ext):]
	}
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	return nil
}

func readBytes(p []byte) (b, rest []byte, ok bool) {
	n, w := binary.Uvarint(p)
	if w <= 0 || uint64(len(p)-w) < n {
		return nil, nil, false
	}
	return p[w : w+int(n)], p[w+int(n):], true
}

func uint64Key(u uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), u)
}

func keyUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
