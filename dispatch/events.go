package dispatch

import (
	"context"

	"connectrpc.com/connect"

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
	// Every quarter of the log scanned past the last resume point the
	// caller knows, tell it how far the stream has scanned (scanned_seq):
	// a quiet merchant's caller then resumes near the log's head instead
	// of after its last event, which may have left the log long ago.
	progressEvery := uint64(max(r.FSM().MaxEvents()/4, 1))
	after, told := m.AfterSeq, m.AfterSeq
	for {
		events, next, notify, err := r.FSM().Events(m.MerchantId, after, watchBatch)
		if err != nil {
			return h.s.toConnect(id, err)
		}
		if len(events) > 0 {
			if err := stream.Send(&pb.WatchResponse{Events: events}); err != nil {
				return err
			}
			told = events[len(events)-1].Seq
		}
		if next != after {
			after = next
			continue // there may be more right away
		}
		if after-told >= progressEvery {
			if err := stream.Send(&pb.WatchResponse{ScannedSeq: after}); err != nil {
				return err
			}
			told = after
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
