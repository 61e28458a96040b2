package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// opsTraffic is steady client traffic for the operations tests: workers
// consult (a new buyer each time) across several merchants, so that most
// shards see writes, and end every other session they got assigned. Every
// call has a generous deadline: the client retries UNAVAILABLE (a shard
// moving, a leader handing over) by itself, so any error it returns is a
// failed client call.
type opsTraffic struct {
	cl        *client.Client
	merchants []string
	stop      chan struct{}
	wg        sync.WaitGroup

	mu     sync.Mutex
	acks   map[string]map[string]string // merchant → buyer → session
	calls  int
	errors []error
}

// startOpsTraffic creates merchants shop0..shop{n-1} (queue on, 4 agents
// of limit 1000 each) and starts workers.
func startOpsTraffic(t *testing.T, ctx context.Context, cl *client.Client, merchants, workers int) *opsTraffic {
	t.Helper()
	tr := &opsTraffic{cl: cl, stop: make(chan struct{}), acks: map[string]map[string]string{}}
	for m := range merchants {
		id := fmt.Sprintf("shop%d", m)
		setupShop(t, ctx, cl, id, 4, 1000, &pb.MerchantSettings{QueueEnabled: true, MaxQueueLength: 100000})
		tr.merchants = append(tr.merchants, id)
		tr.acks[id] = map[string]string{}
	}
	for w := range workers {
		tr.wg.Add(1)
		go tr.work(w)
	}
	return tr
}

func (tr *opsTraffic) work(w int) {
	defer tr.wg.Done()
	for i := 0; ; i++ {
		select {
		case <-tr.stop:
			return
		default:
		}
		m := tr.merchants[(i+w)%len(tr.merchants)]
		buyer := fmt.Sprintf("w%d-b%06d", w, i)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r, err := tr.cl.Consult(ctx, &pb.Consult{MerchantId: m, BuyerId: buyer})
		tr.record(err)
		if err == nil {
			tr.mu.Lock()
			tr.acks[m][buyer] = r.SessionId
			tr.mu.Unlock()
			if i%2 == 0 && r.Outcome == pb.Outcome_OUTCOME_ASSIGNED {
				_, err := tr.cl.End(ctx, m, r.SessionId, pb.EndReason_END_REASON_AGENT_ENDED)
				tr.record(err)
			}
		}
		cancel()
	}
}

func (tr *opsTraffic) record(err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.calls++
	if err != nil {
		tr.errors = append(tr.errors, err)
	}
}

// progress returns how many calls have been made and failed so far.
func (tr *opsTraffic) progress() (calls, failed int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.calls, len(tr.errors)
}

// waitCalls waits until n more calls have been made (traffic is flowing).
func (tr *opsTraffic) waitCalls(t *testing.T, n int) {
	t.Helper()
	start, _ := tr.progress()
	eventually(t, 30*time.Second, func() error {
		if calls, _ := tr.progress(); calls < start+n {
			return fmt.Errorf("%d of %d calls made", calls-start, n)
		}
		return nil
	})
}

// stopAndCheck stops the workers, then checks that no call failed, that
// every acknowledged session exists with its buyer, and that each
// merchant counted exactly the consults acknowledged (none lost, none
// made twice by a retry).
func (tr *opsTraffic) stopAndCheck(t *testing.T, ctx context.Context) {
	t.Helper()
	close(tr.stop)
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	t.Logf("traffic: %d client calls, %d failed", tr.calls, len(tr.errors))
	for i, err := range tr.errors {
		if i == 5 {
			break
		}
		t.Errorf("failed client call: %v", err)
	}
	for _, m := range tr.merchants {
		for buyer, sid := range tr.acks[m] {
			s, err := tr.cl.GetSession(ctx, m, sid)
			if err != nil {
				t.Fatalf("acknowledged session %s of %s/%s: %v", sid, m, buyer, err)
			}
			if s.BuyerId != buyer {
				t.Fatalf("session %s belongs to %s, want %s", sid, s.BuyerId, buyer)
			}
		}
		st, err := tr.cl.GetStats(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if st.Stats.Consults != uint64(len(tr.acks[m])) {
			t.Fatalf("%s counted %d consults, the client had %d acknowledged", m, st.Stats.Consults, len(tr.acks[m]))
		}
		checkLimits(t, ctx, tr.cl, m)
	}
}
