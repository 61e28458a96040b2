package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/internal/localnode"
)

// clusterTarget runs W1 through the Go client against a cluster: one
// client.Client (one HTTP/2 connection per node), or several used in
// turn, as several IM service instances would.
type clusterTarget struct {
	cl     *client.Client // the first; for the shard map
	all    []*client.Client
	next   atomic.Uint64
	addrs  []string
	counts *retryCounter
	batch  int // client.WithBatching's maxCalls; 0: off
	// events is where fdbench logs what it does and sees (kills, slow
	// ops): the --client-log file, beside the client's own records, or
	// nowhere.
	events *slog.Logger
}

// dialCluster connects n clients to any of addrs, with batching of up to
// batch calls per RPC (0: off). logTo, if not nil, also gets every record
// of the clients' debug logs, and fdbench's events.
func dialCluster(ctx context.Context, addrs []string, n, batch int, callTimeout time.Duration, logTo slog.Handler) (*clusterTarget, error) {
	t := &clusterTarget{addrs: addrs, counts: &retryCounter{out: logTo}, batch: batch,
		events: slog.New(slog.DiscardHandler)}
	if logTo != nil {
		t.events = slog.New(logTo).With(slog.String("from", "fdbench"))
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for range max(n, 1) {
		cl, err := client.New(cctx, addrs,
			client.WithCallTimeout(callTimeout),
			client.WithRetry(10*time.Millisecond, 100*time.Millisecond),
			client.WithLogger(slog.New(t.counts)),
			client.WithBatching(batch))
		if err != nil {
			t.close()
			return nil, err
		}
		t.all = append(t.all, cl)
	}
	t.cl = t.all[0]
	return t, nil
}

func (t *clusterTarget) close() {
	for _, cl := range t.all {
		cl.Close()
	}
}

// pick is the client for the next call.
func (t *clusterTarget) pick() *client.Client {
	if len(t.all) == 1 {
		return t.cl
	}
	return t.all[t.next.Add(1)%uint64(len(t.all))]
}

func (t *clusterTarget) setup(ctx context.Context, cmds []*pb.Command) error {
	cl := t.pick()
	for _, c := range cmds {
		cctx := client.WithRequestID(ctx, c.RequestId)
		var err error
		switch b := c.Body.(type) {
		case *pb.Command_UpsertMerchant:
			_, err = cl.UpsertMerchant(cctx, b.UpsertMerchant)
		case *pb.Command_UpsertGroup:
			_, err = cl.UpsertGroup(cctx, b.UpsertGroup)
		case *pb.Command_UpsertAgent:
			_, err = cl.UpsertAgent(cctx, b.UpsertAgent)
		case *pb.Command_SetAgentStatus:
			_, err = cl.SetStatus(cctx, b.SetAgentStatus.MerchantId, b.SetAgentStatus.AgentId, b.SetAgentStatus.Status)
		default:
			err = fmt.Errorf("no client call for %T", c.Body)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *clusterTarget) consult(ctx context.Context, merchant, buyer string) (*pb.Result, error) {
	r, err := t.pick().Consult(ctx, &pb.Consult{MerchantId: merchant, BuyerId: buyer})
	if errors.Is(err, client.ErrBusy) {
		return r, nil
	}
	return r, err
}

func (t *clusterTarget) end(ctx context.Context, merchant, session string) error {
	_, err := t.pick().End(ctx, merchant, session, pb.EndReason_END_REASON_AGENT_ENDED)
	return err
}

func (t *clusterTarget) retries() int64 { return t.counts.retries.Load() }

func (t *clusterTarget) shardOf(merchant string) uint32 { return t.cl.ShardOf(merchant) }

// retryCounter is the client's logger: it counts the client's "retrying"
// debug records (one per repeated attempt) and passes every record on to
// out, if set (--client-log).
type retryCounter struct {
	retries atomic.Int64
	out     slog.Handler
}

func (h *retryCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h *retryCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "retrying" {
		h.retries.Add(1)
	}
	if h.out != nil {
		return h.out.Handle(ctx, r)
	}
	return nil
}

// The client logs with neither attributes nor groups of its own; were it
// to, the records would still be counted, and go to out without them.
func (h *retryCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *retryCounter) WithGroup(string) slog.Handler      { return h }

// terms returns each shard's highest term any reachable node reports.
func terms(ctx context.Context, addrs []string) ([]uint64, error) {
	var out []uint64
	var errs []error
	for _, a := range addrs {
		m, err := localnode.ShardMap(ctx, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, si := range m.ShardInfos {
			for int(si.Shard) >= len(out) {
				out = append(out, 0)
			}
			out[si.Shard] = max(out[si.Shard], si.Term)
		}
	}
	if out == nil {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// commitSum sums each shard's highest commit index any reachable node
// reports: the raft entries committed so far, over all shards.
func commitSum(ctx context.Context, addrs []string) uint64 {
	var per []uint64
	for _, a := range addrs {
		m, err := localnode.ShardMap(ctx, a)
		if err != nil {
			continue
		}
		for _, si := range m.ShardInfos {
			for int(si.Shard) >= len(per) {
				per = append(per, 0)
			}
			per[si.Shard] = max(per[si.Shard], si.CommitIndex)
		}
	}
	var n uint64
	for _, c := range per {
		n += c
	}
	return n
}

// termGrowth is the sum over shards of how much their terms grew.
func termGrowth(before, after []uint64) int64 {
	var n int64
	for i := range min(len(before), len(after)) {
		if after[i] > before[i] {
			n += int64(after[i] - before[i])
		}
	}
	return n
}
