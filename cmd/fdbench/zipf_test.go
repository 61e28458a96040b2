package main

import (
	"math"
	"testing"
)

// frequencies picks n evenly spaced quantiles and counts each rank.
func frequencies(z *zipf, samples, top int, boost float64) []float64 {
	f := make([]float64, len(z.cum))
	for i := range samples {
		f[z.pick((float64(i)+0.5)/float64(samples), top, boost)]++
	}
	for k := range f {
		f[k] /= float64(samples)
	}
	return f
}

func TestZipfMatchesTheDistribution(t *testing.T) {
	z := newZipf(1000, 1.1, 1)
	h := 0.0
	for k := range 1000 {
		h += math.Pow(1+float64(k), -1.1)
	}
	got := frequencies(z, 1_000_000, 0, 1)
	for _, k := range []int{0, 1, 2, 9, 99, 999} {
		want := math.Pow(1+float64(k), -1.1) / h
		if math.Abs(got[k]-want) > 1e-5+want*0.001 {
			t.Errorf("rank %d picked %.6f of the time, want %.6f", k, got[k], want)
		}
		if w := z.weight(k); math.Abs(w-want) > 1e-12 {
			t.Errorf("weight(%d) = %g, want %g", k, w, want)
		}
	}
	if got[0] < 0.15 || got[0] > 0.25 {
		t.Errorf("the top merchant gets %.3f of W1's picks; Zipf(1.1, 1) over 1000 gives about 0.2", got[0])
	}
}

func TestZipfEnds(t *testing.T) {
	z := newZipf(1000, 1.1, 1)
	if k := z.pick(0, 0, 1); k != 0 {
		t.Errorf("pick(0) = %d, want 0", k)
	}
	if k := z.pick(math.Nextafter(1, 0), 0, 1); k != 999 {
		t.Errorf("pick(1-ε) = %d, want 999", k)
	}
	if k := newZipf(1, 1.1, 1).pick(0.7, 10, 20); k != 0 {
		t.Errorf("one rank: pick = %d, want 0", k)
	}
}

func TestZipfSurgeBoostsTheTopTen(t *testing.T) {
	z := newZipf(1000, 1.1, 1)
	base := frequencies(z, 1_000_000, 10, 1)
	surge := frequencies(z, 1_000_000, 10, 20)
	top := 0.0
	for k := range 10 {
		top += z.weight(k)
	}
	wantTop := 20 * top / (20*top + (1 - top))
	gotTop := 0.0
	for k := range 10 {
		gotTop += surge[k]
	}
	if math.Abs(gotTop-wantTop) > 1e-4 {
		t.Errorf("top ten under a 20× surge get %.5f of picks, want %.5f", gotTop, wantTop)
	}
	// Inside each group the relative weights are unchanged.
	for _, k := range []int{1, 5, 9} {
		if r, want := surge[k]/surge[0], base[k]/base[0]; math.Abs(r-want) > 0.01*want {
			t.Errorf("rank %d / rank 0 under surge = %.4f, want %.4f", k, r, want)
		}
	}
	for _, k := range []int{10, 50, 500} {
		if r, want := surge[k]/surge[10], base[k]/base[10]; math.Abs(r-want) > 0.05*want {
			t.Errorf("rank %d / rank 10 under surge = %.4f, want %.4f", k, r, want)
		}
	}
}

func TestSurgeBoostRamp(t *testing.T) {
	for _, tc := range []struct{ sec, want float64 }{{-1, 1}, {0, 1}, {30, 10.5}, {60, 20}, {600, 20}} {
		if got := surgeBoost(tc.sec); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("surgeBoost(%v) = %v, want %v", tc.sec, got, tc.want)
		}
	}
}
