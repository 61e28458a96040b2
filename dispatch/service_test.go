package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// startingNode is a node still opening its replicas after a restart: it
// holds shard 0's replica (and may lead it) but does not know the shard
// count yet. Other methods are not expected to be called.
type startingNode struct {
	Cluster
	proposed int
}

func (n *startingNode) Shards() uint32 { return 0 }

func (n *startingNode) Replica(uint32) (Replica, bool) { return proposeCounter{n: n}, true }

type proposeCounter struct {
	Replica
	n *startingNode
}

func (p proposeCounter) Propose(context.Context, ...*pb.Command) ([]*pb.Result, error) {
	p.n.proposed++
	return nil, errors.New("proposed to a shard guessed without the shard count")
}

// TestNoShardCountNoGuess: a node that does not know the shard count yet
// answers UNAVAILABLE (the client retries elsewhere) instead of routing
// every merchant to shard 0 — whose state machine would answer "merchant
// does not exist" for a consult that another shard may already have
// applied (found by the chaos suite during a full restart).
func TestNoShardCountNoGuess(t *testing.T) {
	n := &startingNode{}
	h := &dispatchHandler{New(n, slog.New(slog.DiscardHandler))}
	_, err := h.Consult(context.Background(), connect.NewRequest(&pb.ConsultRequest{
		RequestId: "r1", Consult: &pb.Consult{MerchantId: "shop", BuyerId: "b1"}}))
	if connect.CodeOf(err) != connect.CodeUnavailable || n.proposed != 0 {
		t.Fatalf("consult on a node without the shard count: %v, %d proposals; want UNAVAILABLE and none", err, n.proposed)
	}
}
