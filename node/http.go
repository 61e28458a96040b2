package node

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/auth"
	"github.com/frontdeskhq/frontdesk/dispatch"
)

var errNoReplica = errors.New("node: no replica of that shard here")

// newHTTPServer serves the Connect API (Connect, gRPC, gRPC-Web over
// HTTP/1.1 and h2c), /healthz, /readyz, /metrics and /debug/pprof on one port.
func (n *Node) newHTTPServer() *http.Server {
	mux := http.NewServeMux()
	svc := dispatch.New(n, n.log.With("component", "dispatch"))
	svc.SetLimits(dispatch.Limits{ConsultRate: n.cfg.ConsultRate, ConsultBurst: n.cfg.ConsultBurst, StreamsPerCaller: n.cfg.StreamsPerCaller})
	svc.SetBatchObserver(n.metrics.observeBatchCall)
	n.api = svc
	interceptors := []connect.Interceptor{n.metrics.interceptor()}
	if n.sec.authSecret != nil {
		ai, err := auth.NewInterceptor(n.sec.authSecret)
		if err != nil {
			panic(err) // loadSecurity checked the secret's length
		}
		interceptors = append(interceptors, ai)
	}
	svc.Register(mux, connect.WithInterceptors(interceptors...))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", n.readyz)
	mux.Handle("/metrics", n.metrics.handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		Protocols:         new(http.Protocols),
	}
	s.Protocols.SetHTTP1(true)
	s.Protocols.SetUnencryptedHTTP2(true)
	if n.sec.apiTLS != nil {
		// Over TLS, HTTP/2 is negotiated by ALPN; prior-knowledge h2c would
		// swallow HTTP/1.1 clients that offer no ALPN.
		s.Protocols.SetUnencryptedHTTP2(false)
		s.Protocols.SetHTTP2(true)
		s.TLSConfig = n.sec.apiTLS
	}
	return s
}

// readyz: 200 once the cluster has formed and every local replica that is
// a member of its shard knows a leader. Replicas waiting to be added by
// placement, or removed and waiting to be dropped, do not count.
func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	select {
	case <-n.formed:
	default:
		http.Error(w, "cluster not formed yet", http.StatusServiceUnavailable)
		return
	}
	for _, g := range n.host.Groups() {
		if cfg, err := g.Configuration(); err != nil || !cfg.Has(n.cfg.ID) {
			continue
		}
		if g.Info().LeaderID == "" {
			http.Error(w, fmt.Sprintf("shard %d has no leader", g.Shard()), http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ready")
}
