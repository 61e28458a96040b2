package node_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// TestReplicaDigest: GetDigest reports the replica's applied index and a
// digest that stays put while nothing is applied and changes with a write.
func TestReplicaDigest(t *testing.T) {
	n := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := "http://" + n.APIAddr()
	rc := frontdeskv1connect.NewReplicaServiceClient(http.DefaultClient, base)
	admin := frontdeskv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.UpsertMerchant(ctx, connect.NewRequest(&pb.UpsertMerchantRequest{
		RequestId: "r1", Merchant: &pb.UpsertMerchant{MerchantId: "m"}})); err != nil {
		t.Fatal(err)
	}
	shard := uint32(0)
	for s := uint32(0); s < 4; s++ {
		if resp, err := admin.ListMerchants(ctx, connect.NewRequest(&pb.ListMerchantsRequest{ShardPlusOne: s + 1})); err == nil && len(resp.Msg.MerchantIds) == 1 {
			shard = s
		}
	}
	get := func() *pb.GetDigestResponse {
		t.Helper()
		resp, err := rc.GetDigest(ctx, connect.NewRequest(&pb.GetDigestRequest{Shard: shard}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}
	a := get()
	if a.AppliedIndex == 0 || len(a.Sha256) != 32 || a.SizeBytes == 0 {
		t.Fatalf("digest %v: want an index, 32 bytes of SHA-256 and a size", a)
	}
	// Ticks (--tick 1s) move the index; equal indexes must give equal digests.
	b := get()
	if b.AppliedIndex == a.AppliedIndex && !bytes.Equal(a.Sha256, b.Sha256) {
		t.Fatalf("two digests at index %d differ", a.AppliedIndex)
	}
	if _, err := admin.UpsertMerchant(ctx, connect.NewRequest(&pb.UpsertMerchantRequest{
		RequestId: "r2", Merchant: &pb.UpsertMerchant{MerchantId: "m", Settings: &pb.MerchantSettings{QueueEnabled: true}}})); err != nil {
		t.Fatal(err)
	}
	if c := get(); c.AppliedIndex <= b.AppliedIndex || bytes.Equal(c.Sha256, b.Sha256) {
		t.Fatalf("after a write: index %d → %d, digest changed %v; want a later index and a new digest",
			b.AppliedIndex, c.AppliedIndex, !bytes.Equal(c.Sha256, b.Sha256))
	}
	// include_state returns the bytes the digest is of; without it, none.
	if c := get(); len(c.State) != 0 {
		t.Fatalf("GetDigest without include_state returned %d bytes of state", len(c.State))
	}
	full, err := rc.GetDigest(ctx, connect.NewRequest(&pb.GetDigestRequest{Shard: shard, IncludeState: true}))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(full.Msg.State); !bytes.Equal(sum[:], full.Msg.Sha256) || uint64(len(full.Msg.State)) != full.Msg.SizeBytes {
		t.Fatalf("include_state: %d bytes whose SHA-256 is %x; the digest says %d bytes, %x",
			len(full.Msg.State), sum, full.Msg.SizeBytes, full.Msg.Sha256)
	}
	if recs := fsm.SnapshotRecords(full.Msg.State); len(recs) < 2 || recs[0].GetHeader().GetLastIndex() != full.Msg.AppliedIndex {
		t.Fatalf("include_state: %d records, header %v; want the state at index %d", len(recs), recs[0], full.Msg.AppliedIndex)
	}
	if _, err := rc.GetDigest(ctx, connect.NewRequest(&pb.GetDigestRequest{Shard: 99})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("GetDigest of shard 99: %v, want INVALID_ARGUMENT", err)
	}
}
