package fsm

import (
	"fmt"
	"reflect"
	"testing"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// A view of the event ring keeps its events, ids included, while later
// pushes fill blocks, grow arenas and drop the oldest blocks.
func TestEventRingViewOutlivesPushes(t *testing.T) {
	var r eventRing
	const bound = 2*eventBlock + 100
	ev := func(i int) event {
		e := event{eventFacts: eventFacts{seq: uint64(i + 1), index: uint64(i), timeMs: int64(i), kind: pb.EventKind(i % 7), compensation: i%5 == 0},
			merchant: fmt.Sprint("m", i%13), session: fmt.Sprint("s-", i), buyer: fmt.Sprint("buyer-", i*i), group: "g"}
		if i%3 != 0 { // and some events without an agent
			e.agent = fmt.Sprint("a", i)
		}
		return e
	}
	for i := range 3*eventBlock + 17 {
		r.push(ev(i), bound)
	}
	v := r.view()
	want := make([]event, v.len())
	for i := range want {
		want[i] = v.at(i)
		if w := ev(int(want[i].seq) - 1); want[i] != w {
			t.Fatalf("event %d: got %+v, want %+v", i, want[i], w)
		}
	}
	for i := 3*eventBlock + 17; i < 8*eventBlock; i++ {
		r.push(ev(i), bound)
	}
	for i := range want {
		if got := v.at(i); got != want[i] {
			t.Fatalf("the view's event %d changed: got %+v, want %+v", i, got, want[i])
		}
	}
	if r.len() != bound || r.at(r.len()-1) != ev(8*eventBlock-1) || r.at(0) != ev(8*eventBlock-bound) {
		t.Fatalf("the ring holds %d events from %+v to %+v", r.len(), r.at(0), r.at(r.len()-1))
	}
	if se, c := r.stored(0); string(c.merchant(se)) != ev(8*eventBlock-bound).merchant {
		t.Fatalf("the oldest event's merchant reads %q", c.merchant(se))
	}
}

// The ring's blocks hold no pointer per event (the reason for the arena).
func TestEventRingHoldsNoPointers(t *testing.T) {
	if p := pointerField(reflect.TypeFor[storedEvent]()); p != "" {
		t.Errorf("storedEvent holds a pointer: %s", p)
	}
}
