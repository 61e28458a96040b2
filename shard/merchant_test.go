package shard_test

import (
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/frontdeskhq/frontdesk/shard"
)

func TestForMerchant(t *testing.T) {
	t.Parallel()
	// Fixed vectors: clients in other languages test against these.
	vectors := []struct {
		id     string
		shards uint32
		want   uint32
	}{
		{"m1", 16, 11},
		{"shop-42", 16, 14},
		{"", 16, 5}, // FNV-1a offset basis 2166136261 % 16
		{"merchant-000", 4, 0},
		{"m1", 1, 0},
		{"m1", 0, 0}, // no shards yet
	}
	for _, v := range vectors {
		if got := shard.ForMerchant(v.id, v.shards); got != v.want {
			t.Errorf("ForMerchant(%q, %d) = %d, want %d", v.id, v.shards, got, v.want)
		}
	}
	// Same function as hash/fnv's 32-bit FNV-1a, and spread over shards.
	const shards, ids = 16, 16000
	counts := make([]int, shards)
	for i := range ids {
		id := fmt.Sprintf("merchant-%d", i)
		h := fnv.New32a()
		h.Write([]byte(id))
		want := h.Sum32() % shards
		got := shard.ForMerchant(id, shards)
		if got != want {
			t.Fatalf("ForMerchant(%q, %d) = %d, hash/fnv says %d", id, shards, got, want)
		}
		counts[got]++
	}
	for s, n := range counts {
		if n < ids/shards*8/10 || n > ids/shards*12/10 {
			t.Errorf("shard %d got %d of %d merchants, want about %d", s, n, ids, ids/shards)
		}
	}
}

func BenchmarkForMerchant(b *testing.B) {
	for b.Loop() {
		shard.ForMerchant("merchant-1234567", 16)
	}
}
