package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// peerTimeout bounds one call to another node's ClusterService.
const peerTimeout = 2 * time.Second

// peers calls other nodes' ClusterService over their API port (h2c), to
// learn how far their replicas have come and to forward drain requests.
type peers struct {
	n  *Node
	hc *http.Client

	mu      sync.Mutex
	clients map[string]frontdeskv1connect.ClusterServiceClient // by API address
}

func newPeers(n *Node) *peers {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		DialContext:     (&net.Dialer{Timeout: time.Second}).DialContext,
		Protocols:       p,
		IdleConnTimeout: time.Minute,
	}
	if tc := n.sec.peerClientTLS(); tc != nil {
		p.SetHTTP2(true)
		tr.TLSClientConfig = tc
	}
	return &peers{n: n, hc: &http.Client{Transport: tr}, clients: map[string]frontdeskv1connect.ClusterServiceClient{}}
}

// scheme is how other nodes' API is reached.
func (p *peers) scheme() string {
	if p.n.sec.apiTLS != nil {
		return "https://"
	}
	return "http://"
}

// authorize adds a fresh operator token when the cluster uses auth.
func (p *peers) authorize() connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			tok, err := p.n.sec.operatorToken()
			if err != nil {
				return nil, err
			}
			if tok != "" {
				req.Header().Set("Authorization", "Bearer "+tok)
			}
			return next(ctx, req)
		}
	}))
}

// client returns the ClusterService client of a member, by node id.
func (p *peers) client(id string) (frontdeskv1connect.ClusterServiceClient, error) {
	mb, ok := p.n.members.get(id)
	if !ok || mb.APIAddr == "" {
		return nil, fmt.Errorf("node: no API address known for node %q", id)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.clients[mb.APIAddr]
	if !ok {
		c = frontdeskv1connect.NewClusterServiceClient(p.hc, p.scheme()+mb.APIAddr, p.authorize())
		p.clients[mb.APIAddr] = c
	}
	return c, nil
}

// status asks node id for its status (this node answers for itself).
func (p *peers) status(ctx context.Context, id string) (*pb.GetStatusResponse, error) {
	if id == p.n.cfg.ID {
		return p.n.Status(), nil
	}
	c, err := p.client(id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	res, err := c.GetStatus(ctx, connect.NewRequest(&pb.GetStatusRequest{}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func (p *peers) close() { p.hc.CloseIdleConnections() }

// statusCache asks each node for its status at most once: one placement
// round's view of the other replicas' progress.
type statusCache struct {
	p *peers

	mu  sync.Mutex
	got map[string]*statusEntry
}

type statusEntry struct {
	once sync.Once
	res  *pb.GetStatusResponse
	err  error
}

func newStatusCache(p *peers) *statusCache {
	return &statusCache{p: p, got: map[string]*statusEntry{}}
}

// shard returns node id's view of its own replica of shard s, or nil if
// the node did not answer or holds no replica of s.
func (c *statusCache) shard(ctx context.Context, id string, s uint32) *pb.ShardInfo {
	c.mu.Lock()
	e, ok := c.got[id]
	if !ok {
		e = &statusEntry{}
		c.got[id] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.res, e.err = c.p.status(ctx, id) })
	if e.err != nil {
		return nil
	}
	for _, si := range e.res.GetShardInfos() {
		if si.GetShard() == s {
			if si.GetLocalState() == "" {
				return nil
			}
			return si
		}
	}
	return nil
}
