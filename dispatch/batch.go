package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/frontdeskhq/frontdesk/auth"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
	"github.com/frontdeskhq/frontdesk/internal/batchwire"
)

// MaxBatchCalls bounds the calls of one DispatchService.Batch; a batch
// with more is refused whole with INVALID_ARGUMENT on field "calls".
const MaxBatchCalls = 512

// batchCall is one call of a batch, resolved: its procedure and request
// (for authorization), how to build its command and how to answer it.
type batchCall struct {
	procedure string
	req       proto.Message
	build     func(context.Context) (string, *pb.Command, error)
	answer    func(*pb.Result) *pb.BatchResult
}

// resolve maps a BatchCall to its procedure; ok is false when no call is set.
func resolve(c *pb.BatchCall) (bc batchCall, ok bool) {
	switch v := c.GetCall().(type) {
	case *pb.BatchCall_Consult:
		return batchCall{frontdeskv1connect.DispatchServiceConsultProcedure, v.Consult,
			func(ctx context.Context) (string, *pb.Command, error) { return consultCommand(ctx, v.Consult) },
			func(r *pb.Result) *pb.BatchResult {
				return &pb.BatchResult{Result: &pb.BatchResult_Consult{Consult: &pb.ConsultResponse{Result: r}}}
			}}, v.Consult != nil
	case *pb.BatchCall_Escalate:
		return batchCall{frontdeskv1connect.DispatchServiceEscalateProcedure, v.Escalate,
			func(ctx context.Context) (string, *pb.Command, error) { return escalateCommand(ctx, v.Escalate) },
			func(r *pb.Result) *pb.BatchResult {
				return &pb.BatchResult{Result: &pb.BatchResult_Escalate{Escalate: &pb.EscalateResponse{Result: r}}}
			}}, v.Escalate != nil
	case *pb.BatchCall_Transfer:
		return batchCall{frontdeskv1connect.DispatchServiceTransferProcedure, v.Transfer,
			func(ctx context.Context) (string, *pb.Command, error) { return transferCommand(ctx, v.Transfer) },
			func(r *pb.Result) *pb.BatchResult {
				return &pb.BatchResult{Result: &pb.BatchResult_Transfer{Transfer: &pb.TransferResponse{Result: r}}}
			}}, v.Transfer != nil
	case *pb.BatchCall_End:
		return batchCall{frontdeskv1connect.DispatchServiceEndProcedure, v.End,
			func(ctx context.Context) (string, *pb.Command, error) { return endCommand(ctx, v.End) },
			func(r *pb.Result) *pb.BatchResult {
				return &pb.BatchResult{Result: &pb.BatchResult_End{End: &pb.EndResponse{Result: r}}}
			}}, v.End != nil
	case *pb.BatchCall_FirstReply:
		return batchCall{frontdeskv1connect.DispatchServiceFirstReplyProcedure, v.FirstReply,
			func(ctx context.Context) (string, *pb.Command, error) { return firstReplyCommand(ctx, v.FirstReply) },
			func(r *pb.Result) *pb.BatchResult {
				return &pb.BatchResult{Result: &pb.BatchResult_FirstReply{FirstReply: &pb.FirstReplyResponse{Result: r}}}
			}}, v.FirstReply != nil
	case *pb.BatchCall_SetStatus:
		return batchCall{frontdeskv1connect.AgentServiceSetStatusProcedure, v.SetStatus,
			func(ctx context.Context) (string, *pb.Command, error) { return setStatusCommand(ctx, v.SetStatus) },
			func(r *pb.Result) *pb.BatchResult {
				return &pb.BatchResult{Result: &pb.BatchResult_SetStatus{SetStatus: &pb.SetStatusResponse{Result: r}}}
			}}, v.SetStatus != nil
	case *pb.BatchCall_PullNext:
		return batchCall{frontdeskv1connect.AgentServicePullNextProcedure, v.PullNext,
			func(ctx context.Context) (string, *pb.Command, error) { return pullNextCommand(ctx, v.PullNext) },
			func(r *pb.Result) *pb.BatchResult {
				return &pb.BatchResult{Result: &pb.BatchResult_PullNext{PullNext: &pb.PullNextResponse{Result: r}}}
			}}, v.PullNext != nil
	}
	return batchCall{}, false
}

// shardPart is the calls of a batch bound for one shard.
type shardPart struct {
	shard  uint32
	r      Replica
	idx    []int // the calls' positions in the batch
	cmds   []*pb.Command
	answer []func(*pb.Result) *pb.BatchResult
}

// Batch answers each call as its own procedure would have: it authorizes
// the call against that procedure's rule (auth.Authorize), builds and
// validates its command, admits it and finds its shard; then it proposes
// the commands of each shard this node leads with one Propose (one Raft
// entry when the shard's batcher is idle), the shards concurrently. Any
// call's failure is that call's BatchError; only a batch with no calls or
// more than MaxBatchCalls fails whole.
func (h *dispatchHandler) Batch(ctx context.Context, req *connect.Request[pb.BatchRequest]) (*connect.Response[pb.BatchResponse], error) {
	calls := req.Msg.GetCalls()
	if len(calls) == 0 {
		return nil, invalidArg("calls", "must hold at least one call")
	}
	if len(calls) > MaxBatchCalls {
		return nil, invalidArg("calls", fmt.Sprintf("holds %d calls, more than the %d a batch may", len(calls), MaxBatchCalls))
	}
	results := make([]*pb.BatchResult, len(calls))
	procs := make([]string, len(calls)) // for the BatchObserver
	var parts []*shardPart
	for i, c := range calls {
		part, cmd, answer, err := h.s.prepareCall(ctx, i, c, &procs[i])
		if err != nil {
			results[i] = batchwire.Result(err)
			continue
		}
		var p *shardPart
		for _, q := range parts {
			if q.shard == part.shard {
				p = q
				break
			}
		}
		if p == nil {
			p = part
			parts = append(parts, p)
		}
		p.idx = append(p.idx, i)
		p.cmds = append(p.cmds, cmd)
		p.answer = append(p.answer, answer)
	}
	if len(parts) == 1 {
		h.s.proposePart(ctx, parts[0], results)
	} else {
		var wg sync.WaitGroup
		for _, p := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.s.proposePart(ctx, p, results)
			}()
		}
		wg.Wait()
	}
	if obs := h.s.onCall; obs != nil {
		for i, r := range results {
			obs(procs[i], connect.Code(r.GetError().GetCode()))
		}
	}
	return connect.NewResponse(&pb.BatchResponse{Results: results}), nil
}

// prepareCall takes call i through everything its unary procedure does
// before proposing: authorization, the request's checks, validation,
// admission, the shard and this node's replica of it. It sets *procedure
// to the procedure the call stands for once known. A panic becomes the
// call's INTERNAL error.
func (s *Service) prepareCall(ctx context.Context, i int, c *pb.BatchCall, procedure *string) (part *shardPart, cmd *pb.Command, answer func(*pb.Result) *pb.BatchResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in a batch call", slog.Int("call", i), slog.Any("panic", p))
			err = connect.NewError(connect.CodeInternal, fmt.Errorf("dispatch: batch call %d: %v", i, p))
		}
	}()
	bc, ok := resolve(c)
	if !ok {
		return nil, nil, nil, invalidArg("call", "must be set")
	}
	*procedure = bc.procedure
	if err := auth.Authorize(ctx, bc.procedure, bc.req); err != nil {
		return nil, nil, nil, err
	}
	merchant, cmd, err := bc.build(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	id, r, err := s.prepare(merchant, cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	return &shardPart{shard: id, r: r}, cmd, bc.answer, nil
}

// proposePart proposes a shard's calls as one Propose and fills in their
// results; an error of the proposal is every one of its calls' error, as
// it would have been for each alone.
func (s *Service) proposePart(ctx context.Context, p *shardPart, results []*pb.BatchResult) {
	fail := func(err error) {
		be := batchwire.Result(err)
		for _, i := range p.idx {
			results[i] = be
		}
	}
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic proposing a batch", slog.Uint64("shard", uint64(p.shard)), slog.Any("panic", v))
			fail(connect.NewError(connect.CodeInternal, fmt.Errorf("dispatch: proposing to shard %d: %v", p.shard, v)))
		}
	}()
	res, err := p.r.Propose(ctx, p.cmds...)
	if err != nil {
		fail(s.toConnect(p.shard, err))
		return
	}
	if len(res) != len(p.cmds) {
		fail(s.toConnect(p.shard, fmt.Errorf("dispatch: shard %d answered %d results for %d commands", p.shard, len(res), len(p.cmds))))
		return
	}
	for k, i := range p.idx {
		r, err := s.result(p.shard, res[k])
		if err != nil {
			results[i] = batchwire.Result(err)
			continue
		}
		results[i] = p.answer[k](r)
	}
}
