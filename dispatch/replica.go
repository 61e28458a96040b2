package dispatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

type replicaHandler struct{ s *Service }

// GetDigest hashes this node's replica of a shard as it stands: the
// snapshot bytes are written under the state machine's read lock, so the
// index in their header and the digest describe the same state.
func (h *replicaHandler) GetDigest(ctx context.Context, req *connect.Request[pb.GetDigestRequest]) (*connect.Response[pb.GetDigestResponse], error) {
	id := req.Msg.Shard
	if id >= h.s.cluster.Shards() {
		return nil, invalidArg("shard", "no such shard")
	}
	r, ok := h.s.cluster.Replica(id)
	if !ok {
		return nil, h.s.toConnect(id, errNoReplica)
	}
	index, sum, size, err := digest(r.FSM())
	if err != nil {
		return nil, h.s.toConnect(id, err)
	}
	return connect.NewResponse(&pb.GetDigestResponse{Shard: id, AppliedIndex: index, Sha256: sum, SizeBytes: size}), nil
}

// digest is the last applied index of f and the SHA-256 of its snapshot.
func digest(f *fsm.FSM) (uint64, []byte, uint64, error) {
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		return 0, nil, 0, fmt.Errorf("dispatch: digest: %w", err)
	}
	var first pb.SnapshotRecord
	if err := protodelim.UnmarshalFrom(bytes.NewReader(buf.Bytes()), &first); err != nil {
		return 0, nil, 0, fmt.Errorf("dispatch: digest: reading the snapshot header: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return first.GetHeader().GetLastIndex(), sum[:], uint64(buf.Len()), nil
}
