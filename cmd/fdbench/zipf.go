package main

import (
	"math"
	"sort"
)

// zipf picks merchant ranks 0..n-1 with probability proportional to
// (v+k)^-s, the distribution of math/rand/v2's Zipf, from a cumulative
// table, so that one rank group (the top merchants) can be boosted at run
// time for the surge variant without rebuilding anything. A zipf is
// read-only after newZipf and safe for concurrent use.
type zipf struct {
	cum []float64 // cum[k] = sum of the weights of ranks 0..k
}

// newZipf returns the picker for n ranks with exponent s and offset v
// (W1: n=1000, s=1.1, v=1). It panics on n < 1, s <= 0 or v < 1.
func newZipf(n int, s, v float64) *zipf {
	if n < 1 || s <= 0 || v < 1 {
		panic("fdbench: zipf needs n >= 1, s > 0, v >= 1")
	}
	z := &zipf{cum: make([]float64, n)}
	sum := 0.0
	for k := range n {
		sum += math.Pow(v+float64(k), -s)
		z.cum[k] = sum
	}
	return z
}

// weight is rank k's share of the total without boost.
func (z *zipf) weight(k int) float64 {
	w := z.cum[k]
	if k > 0 {
		w -= z.cum[k-1]
	}
	return w / z.cum[len(z.cum)-1]
}

// pick maps u in [0, 1) to a rank. The top ranks 0..top-1 have their
// weights multiplied by boost (1 for none): with top=10 and boost=20 the
// ten most popular merchants get twenty times their usual share, relative
// to everyone else.
func (z *zipf) pick(u float64, top int, boost float64) int {
	n := len(z.cum)
	top = min(max(top, 0), n)
	total := z.cum[n-1]
	topW := 0.0
	if top > 0 && boost != 1 {
		topW = z.cum[top-1]
		total += (boost - 1) * topW
	}
	x := u * total
	switch {
	case topW == 0:
	case x < boost*topW:
		x /= boost
	default:
		x -= (boost - 1) * topW
	}
	k := sort.Search(n, func(i int) bool { return z.cum[i] > x })
	return min(k, n-1)
}

// surgeBoost is the W1 surge variant's multiplier after elapsed seconds:
// linear from 1× at the start to 20× at 60 s, then 20×.
func surgeBoost(elapsedSec float64) float64 {
	const peak, ramp = 20.0, 60.0
	if elapsedSec >= ramp {
		return peak
	}
	return 1 + (peak-1)*max(elapsedSec, 0)/ramp
}
