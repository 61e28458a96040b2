package e2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/e2e/cluster"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// TestLeaderKillDuringConsults SIGKILLs the leader of a merchant's shard
// ten times while a client keeps consulting. Each time the client must
// succeed again on that shard within 2 s; afterwards every acknowledged
// session exists exactly once and no agent is above its limit. The
// unavailability windows (kill → first acknowledged consult after it) are
// logged as p50/p99/max.
func TestLeaderKillDuringConsults(t *testing.T) {
	if testing.Short() {
		t.Skip("kills frontdeskd processes")
	}
	const kills = 10
	c := cluster.StartLocal(t, 3, cluster.Options{Shards: 16})
	c.WaitReady(60 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cl, err := client.New(ctx, c.APIAddrs(), client.WithRetry(10*time.Millisecond, 100*time.Millisecond),
		client.WithCallTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const shop = "killshop"
	setupShop(t, ctx, cl, shop, 20, 50, &pb.MerchantSettings{QueueEnabled: true, MaxQueueLength: 100000})
	shard := cl.ShardOf(shop)

	// The consult loop: one buyer per call, acknowledged results recorded.
	var (
		mu    sync.Mutex
		acks  = map[string]string{} // buyer → session id
		times []time.Time           // when each ack arrived
	)
	stop := make(chan struct{})
	loopDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				loopDone <- nil
				return
			default:
			}
			buyer := fmt.Sprintf("b%06d", i)
			cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
			r, err := cl.Consult(cctx, &pb.Consult{MerchantId: shop, BuyerId: buyer})
			if err != nil {
				ccancel()
				loopDone <- fmt.Errorf("consult %s: %w", buyer, err)
				return
			}
			mu.Lock()
			acks[buyer] = r.SessionId
			times = append(times, time.Now())
			mu.Unlock()
			// End every fourth session so ends are exercised too.
			if i%4 == 0 && r.Outcome == pb.Outcome_OUTCOME_ASSIGNED {
				if _, err := cl.End(cctx, shop, r.SessionId, pb.EndReason_END_REASON_AGENT_ENDED); err != nil {
					ccancel()
					loopDone <- fmt.Errorf("end %s: %w", r.SessionId, err)
					return
				}
			}
			ccancel()
		}
	}()
	acked := func() int { mu.Lock(); defer mu.Unlock(); return len(times) }
	eventually(t, 10*time.Second, func() error {
		if acked() < 20 {
			return errors.New("consult loop not running yet")
		}
		return nil
	})

	var windows []time.Duration
	for k := 0; k < kills; k++ {
		leader := -1
		eventually(t, 10*time.Second, func() error {
			if leader = c.LeaderOf(ctx, shard); leader < 0 {
				return fmt.Errorf("shard %d has no leader", shard)
			}
			return nil
		})
		killedAt := time.Now()
		c.Kill(leader)
		// Wait for the first acknowledgement after the kill.
		var back time.Time
		eventually(t, 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			i := sort.Search(len(times), func(i int) bool { return times[i].After(killedAt) })
			if i == len(times) {
				return fmt.Errorf("no consult acknowledged since kill %d", k+1)
			}
			back = times[i]
			return nil
		})
		w := back.Sub(killedAt)
		windows = append(windows, w)
		t.Logf("kill %d: node%d (leader of shard %d) down; consults back after %v", k+1, leader+1, shard, w.Round(time.Millisecond))
		if w > 2*time.Second {
			t.Errorf("kill %d: consults came back after %v, over 2 s", k+1, w)
		}
		c.Start(leader)
		c.WaitReady(60 * time.Second)
	}
	close(stop)
	if err := <-loopDone; err != nil {
		t.Fatal(err)
	}

	// Nothing acknowledged is lost or duplicated; no limit exceeded.
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]string{}
	for buyer, sid := range acks {
		s, err := cl.GetSession(ctx, shop, sid)
		if err != nil {
			t.Fatalf("acknowledged session %s of %s: %v", sid, buyer, err)
		}
		if s.BuyerId != buyer {
			t.Fatalf("session %s belongs to %s, want %s", sid, s.BuyerId, buyer)
		}
		if other, dup := seen[sid]; dup {
			t.Fatalf("session %s acknowledged to %s and %s", sid, other, buyer)
		}
		seen[sid] = buyer
	}
	st, err := cl.GetStats(ctx, shop)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stats.Consults != uint64(len(acks)) {
		t.Fatalf("the shard counted %d consults, the client had %d acknowledged: a retry created a second session or one was lost",
			st.Stats.Consults, len(acks))
	}
	checkLimits(t, ctx, cl, shop)
	sort.Slice(windows, func(i, j int) bool { return windows[i] < windows[j] })
	t.Logf("unavailability over %d leader kills (%d consults acknowledged): p50 %v, p99 %v, max %v",
		kills, len(acks), windows[len(windows)/2].Round(time.Millisecond),
		windows[(len(windows)*99)/100].Round(time.Millisecond), windows[len(windows)-1].Round(time.Millisecond))
}
