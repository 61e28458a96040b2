package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// headerV1 is the magic/version byte that opens every shard connection: high
// nibble 0xF marks the mux, low nibble is the version. Later versions take new
// values.
const headerV1 byte = 0xF1

// headerWatch opens a watch connection (see watch.go): nothing follows it, in
// either direction, until one side closes the connection.
const headerWatch byte = 0xF2

// maxHeaderLen is the longest valid header: the magic byte and a 5-byte uvarint.
const maxHeaderLen = 1 + binary.MaxVarintLen32

// ErrBadHeader is wrapped by every error reading a connection header: wrong
// magic/version byte, truncated or overlong shard id, or a read error.
var ErrBadHeader = errors.New("transport: bad connection header")

// appendHeader appends the header naming shard to b.
func appendHeader(b []byte, shard uint32) []byte {
	b = append(b, headerV1)
	return binary.AppendUvarint(b, uint64(shard))
}

// readHeader reads exactly one header from r, one byte at a time so that no
// byte after the header is consumed: its magic byte (headerV1, headerWatch
// or headerBeats) and, for headerV1, the shard id. Errors wrap ErrBadHeader
// and, where there is one, the read error (io.EOF, io.ErrUnexpectedEOF, a
// timeout).
func readHeader(r io.Reader) (shard uint32, kind byte, err error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, 0, fmt.Errorf("%w: reading magic byte: %w", ErrBadHeader, err)
	}
	if b[0] == headerWatch || b[0] == headerBeats {
		return 0, b[0], nil
	}
	if b[0] != headerV1 {
		return 0, 0, fmt.Errorf("%w: unknown magic/version byte %#02x", ErrBadHeader, b[0])
	}
	var x uint64
	for i := 0; i < binary.MaxVarintLen32; i++ {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, fmt.Errorf("%w: reading shard id: %w", ErrBadHeader, err)
		}
		x |= uint64(b[0]&0x7f) << (7 * i)
		if b[0] < 0x80 {
			if i > 0 && b[0] == 0 {
				return 0, 0, fmt.Errorf("%w: shard id not minimally encoded", ErrBadHeader)
			}
			if x > 1<<32-1 {
				return 0, 0, fmt.Errorf("%w: shard id overflows uint32", ErrBadHeader)
			}
			return uint32(x), headerV1, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: shard id longer than %d bytes", ErrBadHeader, binary.MaxVarintLen32)
}
