package gctune

import (
	"errors"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{0, 512 << 20, MaxPercent},          // no collection yet
		{1 << 20, 512 << 20, MaxPercent},    // 51,200%, capped
		{6 << 20, 512 << 20, 8534},          // just under the cap
		{100 << 20, 512 << 20, 512},         // the heap may grow by 512 MiB
		{150 << 20, 512 << 20, 342},         // rounded up: never less headroom than asked
		{512 << 20, 512 << 20, MinPercent},  // as the runtime's doubling
		{511 << 20, 512 << 20, 101},         // just over it
		{1200 << 20, 512 << 20, MinPercent}, // a node holding a million sessions keeps the doubling
		{1 << 20, 0, MinPercent},            // no headroom: the runtime's default
		{^uint64(0), 1, MinPercent},         // no overflow
		{1, ^uint64(0), MaxPercent},         // no overflow
	} {
		if got := PercentFor(c.live, c.headroom); got != c.want {
			t.Errorf("PercentFor(%d, %d) = %d, want %d", c.live, c.headroom, got, c.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
	}{
		{"0", 0}, {"512", 512}, {"512B", 512}, {"4KiB", 4 << 10}, {"4k", 4 << 10},
		{"512MiB", 512 << 20}, {"512mb", 512 << 20}, {"1GiB", 1 << 30}, {" 2 GiB ", 2 << 30},
		{"1TiB", 1 << 40}, {"16777215TiB", 16777215 << 40},
	} {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
		if back, err := ParseSize(FormatSize(got)); err != nil || back != got {
			t.Errorf("ParseSize(FormatSize(%d) = %q) = %d, %v", got, FormatSize(got), back, err)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "1.5GiB", "1 PiB", "1GiBs", "16777216TiB", "99999999999999999999"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
	for n, want := range map[uint64]string{0: "0B", 1000: "1000B", 1 << 30: "1GiB", 512 << 20: "512MiB", 1536 << 20: "1536MiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestStartKeepsGOGC(t *testing.T) {
	before := gcPercent(t)
	tu, err := Start(512<<20, func(k string) string {
		if k == "GOGC" {
			return "200"
		}
		return ""
	})
	if !errors.Is(err, ErrGOGCSet) || tu != nil {
		t.Fatalf("Start with GOGC set = %v, %v; want nil, ErrGOGCSet", tu, err)
	}
	if got := gcPercent(t); got != before {
		t.Fatalf("the target changed from %d to %d although GOGC is set", before, got)
	}
	if _, err := Start(0, nil); err == nil {
		t.Fatal("Start with no headroom: want an error")
	}
}

// TestTunerFollowsTheLiveHeap keeps a live heap of known size, runs
// collections, and checks the target the tuner sets after them: the
// headroom over what is live, then the doubling once the live heap exceeds
// the headroom, then, after Stop, the target from before Start.
func TestTunerFollowsTheLiveHeap(t *testing.T) {
	before := debug.SetGCPercent(137) // a target Stop must give back
	defer debug.SetGCPercent(before)

	const headroom = 256 << 20
	tu, err := Start(headroom, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer tu.Stop()

	// 32 MiB live (pointer-free, so cheap to keep): the target must be
	// about headroom/live = 800%, less what else this test binary keeps.
	keep := make([][]byte, 0, 64)
	for range 32 {
		keep = append(keep, make([]byte, 1<<20))
	}
	live := waitForTarget(t, tu, func(p int) bool { return p > 300 && p < MaxPercent })
	if want := PercentFor(live, headroom); !near(tu.Percent(), want) {
		t.Fatalf("with %d bytes live the target is %d%%, want about %d%%", live, tu.Percent(), want)
	}
	if gcPercent(t) != tu.Percent() {
		t.Fatalf("the runtime's target is %d%%, the tuner says it set %d%%", gcPercent(t), tu.Percent())
	}

	// 320 MiB live, more than the headroom: the runtime's doubling.
	for range 288 {
		keep = append(keep, make([]byte, 1<<20))
	}
	waitForTarget(t, tu, func(p int) bool { return p == MinPercent })
	runtime.KeepAlive(keep)

	sets := tu.Adjustments()
	tu.Stop()
	if got := gcPercent(t); got != 137 {
		t.Fatalf("after Stop the target is %d%%, want the 137%% from before Start", got)
	}
	runtime.GC()
	runtime.GC()
	time.Sleep(50 * time.Millisecond) // finalizers run on their own goroutine
	if got := gcPercent(t); got != 137 || tu.Adjustments() != sets {
		t.Fatalf("after Stop and two collections the target is %d%% (%d adjustments, %d at Stop): the tuner still runs", got, tu.Adjustments(), sets)
	}
}

// waitForTarget runs collections until the tuner's target satisfies ok and
// returns the live heap the last one found.
func waitForTarget(t *testing.T, tu *Tuner, ok func(int) bool) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(20 * time.Millisecond) // the finalizer runs after the collection
		if ok(tu.Percent()) {
			return liveHeap(t)
		}
		if time.Now().After(deadline) {
			t.Fatalf("target %d%% after 10 s of collections (live heap %d bytes)", tu.Percent(), liveHeap(t))
		}
	}
}

func near(got, want int) bool { return got*20 >= want*19 && got*20 <= want*21 }

func gcPercent(t *testing.T) int {
	return int(readMetric(t, "/gc/gogc:percent"))
}

func liveHeap(t *testing.T) uint64 { return readMetric(t, "/gc/heap/live:bytes") }

func readMetric(t *testing.T, name string) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatalf("runtime metric %s not offered", name)
	}
	return s[0].Value.Uint64()
}
