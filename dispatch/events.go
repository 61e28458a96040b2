package dispatch

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// watchBatch bounds the events sent in one stream message.
const watchBatch = 256

type eventHandler struct{ s *Service }

// Watch streams a merchant's events from this node's replica of its shard
// (leader or follower: events are replicated state, so every replica
// numbers them the same and a client can resume on any node). It ends with
// UNAVAILABLE when the node shuts down (Service.CloseStreams).
func (h *eventHandler) Watch(ctx context.Context, req *connect.Request[pb.WatchRequest], stream *connect.ServerStream[pb.WatchResponse]) error {
	m := req.Msg
	select {
	case <-h.s.closing:
		return errStreamsClosed()
	default:
	}
	id, r, err := h.s.replica(m.MerchantId)
	if err != nil {
		return err
	}
	release, err := h.s.limits.openStream(ctx, req.Peer().Addr)
	if err != nil {
		return err
	}
	defer release()
	after := m.AfterSeq
	for {
		events, next, notify, err := r.FSM().Events(m.MerchantId, after, watchBatch)
		if errors.Is(err, fsm.ErrCompacted) {
			return h.s.toConnect(id, err)
		}
		if err != nil {
			return h.s.toConnect(id, err)
		}
		if len(events) > 0 {
			if err := stream.Send(&pb.WatchResponse{Events: events}); err != nil {
				return err
			}
		}
		if next != after {
			after = next
			continue // there may be more right away
		}
		select {
		case <-ctx.Done():
			return nil
		case <-h.s.closing:
			return errStreamsClosed()
		case <-notify:
		}
	}
}
