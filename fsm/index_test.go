package fsm

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// Ordering agents by id prefix, then by id, is ordering them by id: short
// ids, shared prefixes, zero bytes and bytes over 0x7f included.
func TestAgentKeysOrderByID(t *testing.T) {
	ids := []string{"", "a", "a\x00", "a\x00\x00", "a00", "a01", "a1", "a10", "ab", "abcdefgh", "abcdefgh\x00",
		"abcdefghi", "abcdefgi", "b", "\xff", "\xff\xff\xff\xff\xff\xff\xff\xff\x01", "agent-0001", "agent-0002"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteByte("\x00ab\x7f\x80\xff"[r.IntN(6)])
		}
		ids = append(ids, b.String())
	}
	for _, x := range ids {
		for _, y := range ids {
			kx := agentKey{score: 7, pre: idPrefix(x), id: x}
			ky := agentKey{score: 7, pre: idPrefix(y), id: y}
			if got, want := agentLess(kx, ky), x < y; got != want {
				t.Fatalf("agentLess(%q, %q) = %v, want %v", x, y, got, want)
			}
		}
	}
}
