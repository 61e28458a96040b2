// Package traffic drives the chaos suite's load through the client
// package — consults, escalations, transfers, ends, pull-next, limit and
// status changes, reads — over many merchants and one hot one, and records
// every call in a model.History.
//
// Each write is one Op with one request id. When a call fails without a
// definite answer (the cluster was unavailable until the call's timeout),
// the worker calls again with the same request id until an answer comes:
// the cluster applies a request id at most once, so the Op took effect at
// most once, somewhere between its first call and that answer. Writes
// still unanswered when the traffic stops are asked again, with their
// request ids, by Stop; those that stay unanswered are recorded as
// indeterminate.
package traffic

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	"github.com/frontdeskhq/frontdesk/e2e/model"
)

// Config shapes the traffic. Zero values take the defaults.
type Config struct {
	Merchants  int           // ordinary merchants (default 6)
	Workers    int           // workers per ordinary merchant (default 2)
	HotWorkers int           // workers on the hot merchant (default 6)
	Buyers     int           // buyers per ordinary merchant (default 16)
	HotBuyers  int           // buyers of the hot merchant (default 60)
	Think      time.Duration // mean pause between a worker's calls (default 50ms)
	// CallTimeout bounds one call, retries inside the client included
	// (default 10s); a write is then called again with its request id.
	CallTimeout time.Duration
	Seed        uint64 // for the workers' choices (default 1)
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Merchants, 6)
	def(&c.Workers, 2)
	def(&c.HotWorkers, 6)
	def(&c.Buyers, 16)
	def(&c.HotBuyers, 60)
	if c.Think <= 0 {
		c.Think = 50 * time.Millisecond
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// Traffic is running traffic.
type Traffic struct {
	cfg    Config
	cl     *client.Client
	h      *model.History
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending []pending // writes with no answer when their worker stopped
}

type pending struct {
	op   model.Op
	call func(context.Context) (model.Output, error)
}

// Start runs workers over the merchants ms (set up with Setup) until Stop,
// recording into h.
func Start(cl *client.Client, ms []*model.Merchant, h *model.History, cfg Config) *Traffic {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	t := &Traffic{cfg: cfg, cl: cl, h: h, cancel: cancel}
	id := 0
	for _, m := range ms {
		workers, buyers := cfg.Workers, cfg.Buyers
		if m.ID == Hot {
			workers, buyers = cfg.HotWorkers, cfg.HotBuyers
		}
		k := newKnowledge(m, buyers)
		for range workers {
			w := &worker{t: t, id: id, m: m, k: k, shard: cl.ShardOf(m.ID),
				rnd: rand.New(rand.NewPCG(cfg.Seed, uint64(id)))}
			id++
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				w.run(ctx)
			}()
		}
	}
	return t
}

// Stop stops the workers, then asks again, with their request ids, for the
// writes that had no answer, until each answers or ctx ends; those left are
// recorded as indeterminate. It returns how many.
func (t *Traffic) Stop(ctx context.Context) int {
	t.cancel()
	t.wg.Wait()
	left := 0
	for _, p := range t.pending {
		op := p.op
		for ctx.Err() == nil {
			op.Attempts++
			cctx, cancel := context.WithTimeout(ctx, t.cfg.CallTimeout)
			out, err := p.call(client.WithRequestID(cctx, op.Input.RequestID))
			cancel()
			if definite(err) {
				op.Output, op.Return, op.Error = out, t.h.Now(), errText(err)
				break
			}
			op.Error = errText(err)
			sleep(ctx, 100*time.Millisecond)
		}
		if op.Output.Unknown {
			left++
		}
		t.h.Add(op)
	}
	return left
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
