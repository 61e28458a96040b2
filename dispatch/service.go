// Package dispatch serves frontdesk's Connect API: it validates requests,
// finds each merchant's shard, proposes commands to the shard's leader
// replica on this node (or answers UNAVAILABLE with where the leader is),
// reads replicas, streams events, and maps every error to a Connect code in
// one table (errors.go). Domain rules live in package fsm, never here.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
	"github.com/frontdeskhq/frontdesk/shard"
)

// MaxRequestBytes bounds a request body; larger ones get RESOURCE_EXHAUSTED.
const MaxRequestBytes = 1 << 20

// Replica is one local replica of a shard (a *shard.Group).
type Replica interface {
	// Propose applies commands through Raft as one entry; see shard.Group.
	Propose(ctx context.Context, cmds ...*pb.Command) ([]*pb.Result, error)
	// LinearizableRead returns once reads of FSM() are linearizable.
	LinearizableRead(ctx context.Context) error
	FSM() *fsm.FSM
}

// Cluster is what dispatch needs from its node.
type Cluster interface {
	// Shards is the cluster's fixed shard count.
	Shards() uint32
	// Replica returns this node's replica of a shard, if it has one.
	Replica(shard uint32) (Replica, bool)
	// Leader is the shard's leader as far as this node knows ("" if unknown).
	Leader(shard uint32) (id, apiAddr string)
	// ShardMap and Status describe the cluster for ClusterService.
	ShardMap() *pb.GetShardMapResponse
	Status() *pb.GetStatusResponse
	// TransferLeadership moves a shard's leadership; it returns the new leader's id.
	TransferLeadership(ctx context.Context, shard uint32, to string) (string, error)
	// DrainNode starts (or, with cancel, ends) the drain of a node and says
	// how far it has come. Errors may be *connect.Error (unknown node).
	DrainNode(ctx context.Context, nodeID string, cancel bool) (*pb.DrainNodeResponse, error)
}

// Service implements every frontdesk.v1 service over a Cluster.
type Service struct {
	cluster Cluster
	log     *slog.Logger
	limits  *limiter
	onCall  BatchObserver

	// closing is closed by CloseStreams.
	closing   chan struct{}
	closeOnce sync.Once
}

// BatchObserver is told, once per call a DispatchService.Batch answered,
// the procedure the call stands for (as a unary RPC would have been named;
// "" for a call with nothing set) and the Connect code of its error, 0 when
// it succeeded. A Batch RPC counts as one RPC to a connect.Interceptor; this
// is how metrics see the calls inside it. It runs on the Batch's handler
// goroutine, after the batch is answered in memory and before the response
// is written: it must be quick and must not block.
type BatchObserver func(procedure string, code connect.Code)

// SetBatchObserver sets the observer of batched calls; call it before
// serving. nil (the default) observes nothing.
func (s *Service) SetBatchObserver(o BatchObserver) { s.onCall = o }

// New returns a Service with DefaultLimits. A nil logger logs to slog.Default().
func New(c Cluster, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{cluster: c, log: log, limits: newLimiter(DefaultLimits()), closing: make(chan struct{})}
}

// errStreamsClosed is what an event stream ends with, or is refused with,
// once CloseStreams has been called.
func errStreamsClosed() error {
	return connect.NewError(connect.CodeUnavailable, errors.New("dispatch: node is shutting down; resume the stream on another node"))
}

// CloseStreams ends every event stream (EventService.Watch) now and
// refuses new ones, with UNAVAILABLE, so that their clients resume on
// another node where they were. Call it when the node starts to shut
// down, before http.Server.Shutdown: a stream waiting for events never ends
// by itself, and Shutdown waits for every open stream. Unary calls are not
// affected. Safe to call more than once.
func (s *Service) CloseStreams() {
	s.closeOnce.Do(func() { close(s.closing) })
}

// SetLimits replaces the admission limits; call it before serving.
func (s *Service) SetLimits(l Limits) { s.limits = newLimiter(l) }

// CompressMinBytes: responses smaller than this are sent uncompressed
// whatever the caller accepts. Dispatch answers are a few hundred bytes;
// gzipping each one cost 8% of a node's CPU under W1 (BENCHMARKS.md) and
// saves nothing on a LAN. Large reads (a merchant's sessions) still are.
const CompressMinBytes = 4096

// Register mounts every service and gRPC reflection on mux. Each procedure
// speaks Connect, gRPC and gRPC-Web; bodies over MaxRequestBytes are refused;
// responses under CompressMinBytes are not compressed.
func (s *Service) Register(mux *http.ServeMux, opts ...connect.HandlerOption) {
	opts = append([]connect.HandlerOption{connect.WithReadMaxBytes(MaxRequestBytes),
		connect.WithCompressMinBytes(CompressMinBytes)}, opts...)
	mux.Handle(frontdeskv1connect.NewDispatchServiceHandler(&dispatchHandler{s}, opts...))
	mux.Handle(frontdeskv1connect.NewAgentServiceHandler(&agentHandler{s}, opts...))
	mux.Handle(frontdeskv1connect.NewAdminServiceHandler(&adminHandler{s}, opts...))
	mux.Handle(frontdeskv1connect.NewEventServiceHandler(&eventHandler{s}, opts...))
	mux.Handle(frontdeskv1connect.NewClusterServiceHandler(&clusterHandler{s}, opts...))
	mux.Handle(frontdeskv1connect.NewReplicaServiceHandler(&replicaHandler{s}, opts...))
	names := []string{
		frontdeskv1connect.DispatchServiceName, frontdeskv1connect.AgentServiceName,
		frontdeskv1connect.AdminServiceName, frontdeskv1connect.EventServiceName,
		frontdeskv1connect.ClusterServiceName, frontdeskv1connect.ReplicaServiceName,
	}
	reflector := grpcreflect.NewStaticReflector(names...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
}

// replica finds the merchant's shard and this node's replica of it.
func (s *Service) replica(merchantID string) (uint32, Replica, error) {
	if merchantID == "" {
		return 0, nil, invalidArg("merchant_id", "must not be empty")
	}
	if len(merchantID) > fsm.MaxIDLen {
		return 0, nil, invalidArg("merchant_id", "over the id length limit")
	}
	n := s.cluster.Shards()
	if n == 0 {
		// Not (yet) a member of a formed cluster — starting, or restoring
		// its replicas after a restart: without the shard count this node
		// cannot tell which shard the merchant is on, and must not guess.
		return 0, nil, connect.NewError(connect.CodeUnavailable, errNotFormed)
	}
	id := shard.ForMerchant(merchantID, n)
	r, ok := s.cluster.Replica(id)
	if !ok {
		return id, nil, s.toConnect(id, errNoReplica)
	}
	return id, r, nil
}

// write validates a command, admits it (consults count against the
// merchant's rate), proposes it to the merchant's shard and returns its
// result; a result carrying an fsm error becomes that error.
func (s *Service) write(ctx context.Context, merchantID string, cmd *pb.Command) (*pb.Result, error) {
	id, r, err := s.prepare(merchantID, cmd)
	if err != nil {
		return nil, err
	}
	res, err := r.Propose(ctx, cmd)
	if err != nil {
		return nil, s.toConnect(id, err)
	}
	return s.result(id, res[0])
}

// prepare is everything a write goes through before its proposal:
// validation, admission (consults count against the merchant's rate) and
// finding this node's replica of the merchant's shard.
func (s *Service) prepare(merchantID string, cmd *pb.Command) (uint32, Replica, error) {
	if err := fsm.Validate(cmd); err != nil {
		return 0, nil, s.toConnect(0, err)
	}
	if _, consult := cmd.Body.(*pb.Command_Consult); consult {
		if err := s.limits.admitConsult(merchantID); err != nil {
			return 0, nil, err
		}
	}
	return s.replica(merchantID)
}

// result is a proposal's result, or the fsm error it carries.
func (s *Service) result(shardID uint32, res *pb.Result) (*pb.Result, error) {
	if err := fsm.ResultError(res); err != nil {
		return nil, s.toConnect(shardID, err)
	}
	return res, nil
}

// read returns the merchant's replica ready to be read: linearizable
// unless stale is set, in which case any replica answers from local state.
func (s *Service) read(ctx context.Context, merchantID string, stale bool) (uint32, *fsm.FSM, error) {
	id, r, err := s.replica(merchantID)
	if err != nil {
		return id, nil, err
	}
	if !stale {
		if err := r.LinearizableRead(ctx); err != nil {
			return id, nil, s.toConnect(id, err)
		}
	}
	return id, r.FSM(), nil
}
