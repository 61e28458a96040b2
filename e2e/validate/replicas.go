package validate

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// ShardDigest is what the replicas of one shard reported.
type ShardDigest struct {
	Shard uint32 `json:"shard"`
	// Index is the applied index the digests were compared at, and Nodes
	// the replicas that reported it (all of them unless some kept lagging).
	Index   uint64            `json:"index"`
	Nodes   []string          `json:"nodes"`
	Digests map[string]string `json:"digests"` // by node address: hex SHA-256 at Index
	Lagging []string          `json:"lagging,omitempty"`
	Agree   bool              `json:"agree"`
	// When replicas disagree: the differences of each from the first at
	// the same index (fsm.DiffSnapshots) and the snapshot bytes by node,
	// which the report writes out.
	Diffs  map[string][]string `json:"diffs,omitempty"`
	States map[string][]byte   `json:"-"`
}

// Replicas asks every node in addrs for its replica's digest of each shard
// (ReplicaService.GetDigest) and checks that replicas at the same applied
// index hold byte-identical state. Shard leaders keep applying ticks, so
// it asks again, up to tries times, until every replica reports the same
// index; the digests are then compared among the replicas that share the
// index most of them report.
func Replicas(ctx context.Context, addrs []string, shards uint32, tries int) ([]ShardDigest, []Violation) {
	hc := &http.Client{Timeout: 5 * time.Second}
	clients := make([]frontdeskv1connect.ReplicaServiceClient, len(addrs))
	for i, a := range addrs {
		clients[i] = frontdeskv1connect.NewReplicaServiceClient(hc, "http://"+a)
	}
	var out []ShardDigest
	var bad []Violation
	for s := uint32(0); s < shards; s++ {
		var best ShardDigest
		for try := 0; try < tries; try++ {
			got := ask(ctx, clients, addrs, s, false)
			best = compare(s, got)
			if len(best.Lagging) == 0 || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !best.Agree {
			best.explain(ctx, clients, addrs, tries)
		}
		if !best.Agree {
			bad = append(bad, Violation{Check: "replicas", Detail: fmt.Sprintf(
				"shard %d: replicas at index %d differ: %v", s, best.Index, best.Digests)})
		}
		out = append(out, best)
	}
	return out, bad
}

type digestReply struct {
	addr string
	resp *pb.GetDigestResponse
}

// ask queries every node at once, so that they answer at nearly the same
// index.
func ask(ctx context.Context, clients []frontdeskv1connect.ReplicaServiceClient, addrs []string, shard uint32, state bool) []digestReply {
	replies := make([]digestReply, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.GetDigest(ctx, connect.NewRequest(&pb.GetDigestRequest{Shard: shard, IncludeState: state}))
			if err == nil {
				replies[i] = digestReply{addr: addrs[i], resp: resp.Msg}
			}
		}()
	}
	wg.Wait()
	return slices.DeleteFunc(replies, func(r digestReply) bool { return r.resp == nil })
}

// compare picks the index most replicas report (the highest on a tie) and
// compares their digests.
func compare(shard uint32, replies []digestReply) ShardDigest {
	at := map[uint64]int{}
	var index uint64
	for _, r := range replies {
		at[r.resp.AppliedIndex]++
		if n, i := at[r.resp.AppliedIndex], r.resp.AppliedIndex; n > at[index] || n == at[index] && i > index {
			index = i
		}
	}
	d := ShardDigest{Shard: shard, Index: index, Digests: map[string]string{}, Agree: true}
	var first string
	for _, r := range replies {
		if r.resp.AppliedIndex != index {
			d.Lagging = append(d.Lagging, r.addr)
			continue
		}
		sum := hex.EncodeToString(r.resp.Sha256)
		d.Nodes = append(d.Nodes, r.addr)
		d.Digests[r.addr] = sum
		if first == "" {
			first = sum
		} else if sum != first {
			d.Agree = false
		}
	}
	return d
}

// explain asks the replicas again, with their state, until they report one
// index (they keep applying ticks), and records how each differs from the
// first. The digests it found stay the verdict; this is for the person
// reading the report.
func (d *ShardDigest) explain(ctx context.Context, clients []frontdeskv1connect.ReplicaServiceClient, addrs []string, tries int) {
	for try := 0; try < tries && ctx.Err() == nil; try++ {
		got := ask(ctx, clients, addrs, d.Shard, true)
		again := compare(d.Shard, got)
		if len(again.Lagging) > 0 || len(again.Nodes) < 2 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		d.States = map[string][]byte{}
		d.Diffs = map[string][]string{}
		var first []byte
		for _, r := range got {
			d.States[r.addr] = r.resp.State
			if first == nil {
				first = r.resp.State
				continue
			}
			if diff := fsm.DiffSnapshots(first, r.resp.State, 20); len(diff) > 0 {
				d.Diffs[fmt.Sprintf("%s vs %s at index %d", again.Nodes[0], r.addr, again.Index)] = diff
			}
		}
		return
	}
}
