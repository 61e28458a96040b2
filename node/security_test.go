package node_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/auth"
	"github.com/frontdeskhq/frontdesk/client"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
	"github.com/frontdeskhq/frontdesk/node"
)

var testSecret = []byte("an-example-cluster-secret-of-32+bytes")

func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pki makes a CA and, for each name, a certificate for 127.0.0.1 signed by
// it (usable as server and client certificate); files in dir.
type pki struct {
	caPath string
	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
	pool   *x509.CertPool
}

func newPKI(t *testing.T, dir string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "frontdesk test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &pki{caPath: writeFile(t, dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), ca: ca, key: key, pool: pool}
}

func (p *pki) issue(t *testing.T, dir, name string) (certPath, keyPath string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return writeFile(t, dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		writeFile(t, dir, name+"-key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func token(t *testing.T, c auth.Claims) string {
	t.Helper()
	c.Expires = time.Now().Add(time.Hour)
	tok, err := auth.Issue(testSecret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRefusesOpenNonLoopback(t *testing.T) {
	cfg := &node.Config{ID: "n", DataDir: t.TempDir(), APIAddr: "0.0.0.0:0", RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err := node.Start(cfg, quietLog())
	if err == nil || !strings.Contains(err.Error(), "--auth-secret-file") || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("want a refusal naming --auth-secret-file and --insecure, got %v", err)
	}
	for _, tc := range []struct {
		name string
		set  func(*node.Config)
		want string
	}{
		{"short secret", func(c *node.Config) { c.AuthSecretFile = writeFile(t, t.TempDir(), "s", []byte("short")) }, "at least 32"},
		{"cert without key", func(c *node.Config) { c.TLSCert = "x.pem" }, "--tls-cert and --tls-key"},
		{"peer tls incomplete", func(c *node.Config) { c.PeerTLSCert = "x.pem" }, "go together"},
		{"gossip key size", func(c *node.Config) { c.GossipKey = base64.StdEncoding.EncodeToString([]byte("12345")) }, "16, 24 or 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &node.Config{ID: "n", DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0"}
			tc.set(c)
			_ = c.Validate()
			if _, err := node.Start(c, quietLog()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error mentioning %q, got %v", tc.want, err)
			}
		})
	}
}

// secureNode is one node's config in a secure test cluster.
func secureConfig(t *testing.T, id string, ca *pki, gossipKey string, expect int) *node.Config {
	dir := t.TempDir()
	cert, key := ca.issue(t, dir, id)
	c := &node.Config{
		ID: id, DataDir: dir, APIAddr: freeLoopback(t), RaftAddr: freeLoopback(t), GossipAddr: freeLoopback(t),
		BootstrapExpect: expect, Shards: 4, Replication: 3, FastRaft: true, JoinTimeout: 3 * time.Second,
		AuthSecretFile: writeFile(t, dir, "secret", testSecret),
		TLSCert:        cert, TLSKey: key, PeerTLSCert: cert, PeerTLSKey: key, PeerTLSCA: ca.caPath,
		GossipKey: gossipKey, ReconcileInterval: 100 * time.Millisecond, LeaderSettle: time.Second,
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSecureCluster: three nodes with API TLS, Raft mTLS, gossip
// encryption and tokens pass the client flow; tokens are enforced over the
// wire; a node with the wrong gossip key or a peer certificate from
// another CA cannot join.
func TestSecureCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ca := newPKI(t, t.TempDir())
	gk := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	var cfgs []*node.Config
	var gossip []string
	for _, id := range []string{"s1", "s2", "s3"} {
		c := secureConfig(t, id, ca, gk, 3)
		cfgs = append(cfgs, c)
		gossip = append(gossip, c.GossipAddr)
	}
	var nodes []*node.Node
	for _, c := range cfgs {
		c.Join = gossip
		n, err := node.Start(c, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Kill)
		nodes = append(nodes, n)
	}
	tlsClient := &tls.Config{RootCAs: ca.pool}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsClient, ForceAttemptHTTP2: true}, Timeout: 3 * time.Second}
	for _, c := range cfgs {
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := hc.Get("https://" + c.APIAddr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready over TLS: %v", c.ID, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addrs := []string{cfgs[0].APIAddr, cfgs[1].APIAddr, cfgs[2].APIAddr}
	sup, err := client.New(ctx, addrs, client.WithTLS(tlsClient), client.WithToken(token(t, auth.Claims{Role: auth.RoleSupervisor, Merchants: []string{"m1"}})))
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	must := func(_ *pb.Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(sup.UpsertMerchant(ctx, &pb.UpsertMerchant{MerchantId: "m1"}))
	must(sup.UpsertGroup(ctx, &pb.UpsertGroup{MerchantId: "m1", GroupId: "g"}))
	must(sup.UpsertMerchant(ctx, &pb.UpsertMerchant{MerchantId: "m1", Settings: &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g"}}))
	must(sup.UpsertAgent(ctx, &pb.UpsertAgent{MerchantId: "m1", AgentId: "a1", Limit: 2, Groups: []*pb.AgentGroup{{GroupId: "g"}}}))
	must(sup.UpsertAgent(ctx, &pb.UpsertAgent{MerchantId: "m1", AgentId: "a2", Limit: 2, Groups: []*pb.AgentGroup{{GroupId: "g"}}}))
	must(sup.SetStatus(ctx, "m1", "a1", pb.AgentStatus_AGENT_STATUS_ONLINE))

	im, err := client.New(ctx, addrs, client.WithTLS(tlsClient), client.WithToken(token(t, auth.Claims{Role: auth.RoleIMService, Merchants: []string{"m1"}})))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	r, err := im.Consult(ctx, &pb.Consult{MerchantId: "m1", BuyerId: "b1"})
	if err != nil || r.Outcome != pb.Outcome_OUTCOME_ASSIGNED || r.AgentId != "a1" {
		t.Fatalf("consult over TLS with a token: %v %v", r, err)
	}
	before, err := sup.GetStats(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}

	// Over the wire: no token, another merchant, an IM service configuring,
	// another agent's session, another merchant's stream.
	base := "https://" + cfgs[0].APIAddr
	call := func(tok string) error {
		c := frontdeskv1connect.NewDispatchServiceClient(hc, base)
		req := connect.NewRequest(&pb.ConsultRequest{RequestId: "x", Consult: &pb.Consult{MerchantId: "m1", BuyerId: "b9"}})
		if tok != "" {
			req.Header().Set("Authorization", "Bearer "+tok)
		}
		_, err := c.Consult(ctx, req)
		return err
	}
	if err := call(""); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("no token: %v", err)
	}
	if err := call(token(t, auth.Claims{Role: auth.RoleIMService, Merchants: []string{"m2"}})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("other merchant: %v", err)
	}
	if _, err := im.UpsertAgent(ctx, &pb.UpsertAgent{MerchantId: "m1", AgentId: "a9"}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("an IM service configuring: %v", err)
	}
	other, err := client.New(ctx, addrs, client.WithTLS(tlsClient), client.WithToken(token(t, auth.Claims{Role: auth.RoleAgent, Merchants: []string{"m1"}, Agent: "a2"})))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.End(ctx, "m1", r.SessionId, pb.EndReason_END_REASON_AGENT_ENDED); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("another agent ending a1's session: %v", err)
	}
	w := im.Watch(ctx, "m2", 0)
	if _, err := w.Next(); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("another merchant's event stream: want PermissionDenied, got %v", err)
	}
	w.Close()
	after, err := sup.GetStats(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if before.Stats.String() != after.Stats.String() {
		t.Fatalf("denied calls changed the state:\n%v\n%v", before.Stats, after.Stats)
	}
	s, err := sup.GetSession(ctx, "m1", r.SessionId)
	if err != nil || s.State != pb.SessionState_SESSION_STATE_ASSIGNED {
		t.Fatalf("a1's session after the denied end: %v %v", s, err)
	}

	// A node with the wrong gossip key cannot join.
	bad := secureConfig(t, "s4", ca, base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210")), 0)
	bad.Join = gossip
	if n, err := node.Start(bad, quietLog()); err == nil {
		n.Kill()
		t.Fatal("a node with the wrong gossip key joined")
	}
	// A node whose peer certificate comes from another CA cannot take part
	// in Raft: it joins gossip but never becomes a voter of any shard.
	rogue := secureConfig(t, "s5", newPKI(t, t.TempDir()), gk, 0)
	rogue.Join = gossip
	rn, err := node.Start(rogue, quietLog())
	if err != nil {
		t.Fatalf("start the rogue node (gossip key is right): %v", err)
	}
	t.Cleanup(rn.Kill)
	op, err := client.New(ctx, addrs, client.WithTLS(tlsClient), client.WithToken(token(t, auth.Claims{Role: auth.RoleOperator})))
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	// An observation window of several placement rounds: the rogue node is
	// in gossip, so placement tries to add it, and Raft must refuse it.
	time.Sleep(3 * time.Second)
	st, err := op.Status(ctx)
	if err != nil {
		t.Fatalf("operator status: %v", err)
	}
	{
		for _, si := range st.ShardInfos {
			for _, v := range si.VoterIds {
				if v == "s5" {
					t.Fatalf("shard %d took the node with a foreign peer certificate as a voter", si.Shard)
				}
			}
		}
	}
	_ = nodes
}
