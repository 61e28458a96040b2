package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/auth"
)

func TestConsultRate(t *testing.T) {
	lm := newLimiter(Limits{ConsultRate: 10, ConsultBurst: 3})
	now := time.Unix(1000, 0)
	lm.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if err := lm.admitConsult("m1"); err != nil {
			t.Fatalf("consult %d within the burst: %v", i, err)
		}
	}
	err := lm.admitConsult("m1")
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted || ce.Meta().Get("Retry-After") != "1" {
		t.Fatalf("over the burst: want ResourceExhausted with Retry-After 1, got %v", err)
	}
	if err := lm.admitConsult("m2"); err != nil {
		t.Fatalf("another merchant is not limited by m1: %v", err)
	}
	now = now.Add(100 * time.Millisecond) // one token at 10/s
	if err := lm.admitConsult("m1"); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	if err := lm.admitConsult("m1"); err == nil {
		t.Fatal("only one token refilled")
	}
	now = now.Add(2 * time.Minute)
	_ = lm.admitConsult("m3") // sweeps full buckets
	if len(lm.buckets) != 1 {
		t.Fatalf("idle full buckets are forgotten: %d left", len(lm.buckets))
	}
	if err := newLimiter(Limits{}).admitConsult("m1"); err != nil {
		t.Fatalf("rate 0 is unlimited: %v", err)
	}
}

func TestStreamsPerCaller(t *testing.T) {
	lm := newLimiter(Limits{StreamsPerCaller: 2})
	ctx := context.Background()
	r1, err1 := lm.openStream(ctx, "10.0.0.1:5000")
	_, err2 := lm.openStream(ctx, "10.0.0.1:5001")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := lm.openStream(ctx, "10.0.0.1:5002"); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("third stream from one IP: want ResourceExhausted, got %v", err)
	}
	if _, err := lm.openStream(ctx, "10.0.0.2:5000"); err != nil {
		t.Fatalf("another caller: %v", err)
	}
	r1()
	if _, err := lm.openStream(ctx, "10.0.0.1:5003"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if callerKey(ctx, "[::1]:80") != "[::1]:80" || callerKey(ctx, "10.0.0.9:1") != "10.0.0.9" {
		t.Fatal("callerKey without auth is the IP")
	}
	_ = auth.RoleAgent
}
