package transport

import (
	"bytes"
	"errors"
	"io"
	"math"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		shard   uint32
		wantLen int
	}{
		{0, 2}, {1, 2}, {127, 2}, {128, 3}, {16383, 3}, {16384, 4},
		{1<<28 - 1, 5}, {1 << 28, 6}, {math.MaxUint32, 6},
	} {
		h := appendHeader(nil, tt.shard)
		if len(h) != tt.wantLen || h[0] != headerV1 {
			t.Errorf("shard %d: want %d bytes starting with %#02x, got % x", tt.shard, tt.wantLen, headerV1, h)
		}
		// A byte after the header belongs to raft and must stay unread.
		r := bytes.NewReader(append(h, 0xAB))
		got, _, err := readHeader(r)
		if err != nil || got != tt.shard {
			t.Errorf("shard %d: read back (%d, %v)", tt.shard, got, err)
		}
		if next, err := r.ReadByte(); err != nil || next != 0xAB {
			t.Errorf("shard %d: readHeader consumed past the header: next byte (%#02x, %v), want 0xab", tt.shard, next, err)
		}
	}
}

func TestHeaderRejected(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      []byte
		wantErr error // in addition to ErrBadHeader
	}{
		{"empty", nil, io.EOF},
		{"bad magic", []byte{0x00, 0x01}, nil},
		{"next version", []byte{0xF4, 0x01}, nil},
		{"TLS client hello", []byte{0x16, 0x03, 0x01}, nil},
		{"HTTP", []byte("GET / HTTP/1.1\r\n"), nil},
		{"magic only", []byte{headerV1}, io.ErrUnexpectedEOF},
		{"truncated varint", []byte{headerV1, 0x80}, io.ErrUnexpectedEOF},
		{"truncated long varint", []byte{headerV1, 0xff, 0xff, 0xff}, io.ErrUnexpectedEOF},
		{"overflows uint32", []byte{headerV1, 0xff, 0xff, 0xff, 0xff, 0x10}, nil},
		{"six byte varint", []byte{headerV1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, nil},
		{"not minimal", []byte{headerV1, 0x81, 0x00}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			shard, _, err := readHeader(bytes.NewReader(tt.in))
			if !errors.Is(err, ErrBadHeader) {
				t.Fatalf("readHeader(% x) = (%d, %v), want an error wrapping ErrBadHeader", tt.in, shard, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("readHeader(% x) = %v, want it to wrap %v too", tt.in, err, tt.wantErr)
			}
		})
	}
}
