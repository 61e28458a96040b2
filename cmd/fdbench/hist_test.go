package main

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	prevHi := uint64(0)
	for i := 0; i < histBuckets; i++ {
		lo, hi := bucketRange(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, want %d (right after bucket %d)", i, lo, prevHi+1, i-1)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d = [%d, %d], but bucketOf gives %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if i >= histSub && float64(hi-lo+1) > float64(lo)/64+1 {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/64 of its value", i, lo, hi)
		}
		prevHi = hi
	}
}

func TestPercentiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []uint64 // µs
		q      float64
		want   uint64 // µs
		tol    float64
	}{
		{"exact below 128µs", seq(1, 100), 0.5, 50, 0},
		{"p99 of 1..100", seq(1, 100), 0.99, 99, 0},
		{"p100 is the max", seq(1, 100), 1, 100, 0},
		{"p0 is the min", seq(1, 100), 0, 1, 0},
		{"p50 of 1..100000", seq(1, 100_000), 0.5, 50_000, 0.008},
		{"p99 of 1..100000", seq(1, 100_000), 0.99, 99_000, 0.008},
		{"p99.9 of 1..100000", seq(1, 100_000), 0.999, 99_900, 0.008},
		{"one outlier is p99.9 of 1000", append(repeat(1000, 999), 2_000_000), 0.999, 1000, 0.008},
		{"one outlier is above p99.9 of 999", append(repeat(1000, 998), 2_000_000), 0.9995, 2_000_000, 0.008},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h hist
			for _, v := range shuffled(tc.values) {
				h.record(time.Duration(v) * time.Microsecond)
			}
			got := uint64(h.percentile(tc.q) / time.Microsecond)
			diff := float64(got) - float64(tc.want)
			if diff < 0 {
				diff = -diff
			}
			if diff > tc.tol*float64(tc.want) {
				t.Fatalf("percentile(%v) = %dµs, want %dµs ± %.1f%%", tc.q, got, tc.want, tc.tol*100)
			}
		})
	}
}

func TestEmptyHistogram(t *testing.T) {
	var h hist
	if p := h.percentile(0.99); p != 0 || h.count() != 0 || h.maxLatency() != 0 {
		t.Fatalf("empty histogram: p99 %v, count %d, max %v; want zeros", p, h.count(), h.maxLatency())
	}
}

func TestConcurrentRecording(t *testing.T) {
	var h hist
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10_000 {
				h.record(time.Duration(g*10_000+i+1) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	if h.count() != 80_000 || h.maxLatency() != 80*time.Millisecond {
		t.Fatalf("count %d, max %v; want 80000 and 80ms", h.count(), h.maxLatency())
	}
}

func seq(from, to uint64) []uint64 {
	out := make([]uint64, 0, to-from+1)
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

func repeat(v uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func shuffled(v []uint64) []uint64 {
	out := append([]uint64(nil), v...)
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
