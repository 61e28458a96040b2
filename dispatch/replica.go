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
	index, state, err := snapshotAt(r.FSM())
	if err != nil {
		return nil, h.s.toConnect(id, err)
	}
	sum := sha256.Sum256(state)
	resp := &pb.GetDigestResponse{Shard: id, AppliedIndex: index, Sha256: sum[:], SizeBytes: uint64(len(state))}
	if req.Msg.IncludeState {
		if len(state) > maxStateBytes {
			return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
				"include_state: shard %d's state is %d bytes, more than the %d this call returns", id, len(state), maxStateBytes))
		}
		resp.State = state
	}
	return connect.NewResponse(resp), nil
}

// maxStateBytes bounds the state GetDigest returns with include_state.
const maxStateBytes = 64 << 20

// snapshotAt is f's snapshot bytes and the last applied index they hold.
func snapshotAt(f *fsm.FSM) (uint64, []byte, error) {
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		return 0, nil, fmt.Errorf("dispatch: digest: %w", err)
	}
	var first pb.SnapshotRecord
	if err := protodelim.UnmarshalFrom(bytes.NewReader(buf.Bytes()), &first); err != nil {
		return 0, nil, fmt.Errorf("dispatch: digest: reading the snapshot header: %w", err)
	}
	return first.GetHeader().GetLastIndex(), buf.Bytes(), nil
}
