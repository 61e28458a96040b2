package node_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/node/nodetest"
)

// addrLog records the "addr" of the client's "watching" log records: the
// node each of a Watcher's streams was opened on.
type addrLog struct {
	mu    sync.Mutex
	addrs []string
}

func (l *addrLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *addrLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *addrLog) WithGroup(string) slog.Handler            { return l }
func (l *addrLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "watching" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "addr" {
			l.mu.Lock()
			l.addrs = append(l.addrs, a.Value.String())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *addrLog) streams() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.addrs...)
}

// TestWatchResumesAfterShutdown: a node shutting down (what SIGTERM does)
// with a client's event stream open ends the stream at once, and the
// client's Watcher goes on on another node from the last event it
// delivered: the events written after the shutdown arrive, each once, in
// order.
func TestWatchResumesAfterShutdown(t *testing.T) {
	c := nodetest.Start(t, 3, nodetest.Options{Shards: 4})
	c.WaitPlaced(c.Running(), 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := &addrLog{}
	cl, err := client.New(ctx, c.APIAddrs(), client.WithLogger(slog.New(log)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const m = "shop"
	upsert := func() {
		t.Helper()
		if _, err := cl.UpsertMerchant(ctx, &pb.UpsertMerchant{MerchantId: m}); err != nil {
			t.Fatal(err)
		}
	}
	upsert()
	w := cl.Watch(ctx, m, 0)
	defer w.Close()
	var seqs []uint64
	next := func() {
		t.Helper()
		events, err := w.Next()
		if err != nil {
			t.Fatalf("after events %v: %v", seqs, err)
		}
		for _, e := range events {
			seqs = append(seqs, e.GetSeq())
		}
	}
	next()
	before := log.streams()
	if len(before) == 0 {
		t.Fatal("no stream opened")
	}
	var on *nodetest.Member // the node of the stream open now
	for _, mb := range c.Members() {
		if "http://"+mb.APIAddr() == before[len(before)-1] {
			on = mb
		}
	}
	if on == nil {
		t.Fatalf("the stream's node %s is not a member", before[len(before)-1])
	}

	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := on.Node().Shutdown(sctx); err != nil {
		t.Fatalf("shutting %s down: %v", on.ID, err)
	}
	const more = 3
	for range more {
		upsert()
	}
	for len(seqs) < 1+more {
		next()
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("event seqs %v do not increase", seqs)
		}
	}
	if len(seqs) != 1+more {
		t.Fatalf("events %v, want %d", seqs, 1+more)
	}
	streams := log.streams()
	if len(streams) <= len(before) || streams[len(streams)-1] == "http://"+on.APIAddr() {
		t.Fatalf("streams opened: %v; want a new one after %s shut down, on another node", streams, on.ID)
	}
	t.Logf("streams: %v; events %v", streams, seqs)
}
