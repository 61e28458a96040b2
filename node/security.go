package node

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/frontdeskhq/frontdesk/auth"
)

// security is what the node loaded from its security flags (SECURITY.md).
type security struct {
	authSecret []byte      // nil: no authentication (dev, or --insecure)
	apiTLS     *tls.Config // nil: plain HTTP/1.1 and h2c
	peerTLS    *tls.Config // nil: plain TCP for Raft; else mutual TLS
	peerRoots  *x509.CertPool
	gossipKey  []byte // nil: gossip in clear
}

// loadSecurity reads the secret, certificates and gossip key the flags name.
func (c *Config) loadSecurity() (*security, error) {
	s := &security{}
	if c.AuthSecretFile != "" {
		b, err := os.ReadFile(c.AuthSecretFile)
		if err != nil {
			return nil, fmt.Errorf("--auth-secret-file: %w", err)
		}
		s.authSecret = []byte(strings.TrimSpace(string(b)))
		if len(s.authSecret) < auth.MinSecretBytes {
			return nil, fmt.Errorf("--auth-secret-file: the secret is %d bytes; at least %d are needed", len(s.authSecret), auth.MinSecretBytes)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		s.apiTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	}
	set := 0
	for _, v := range []string{c.PeerTLSCert, c.PeerTLSKey, c.PeerTLSCA} {
		if v != "" {
			set++
		}
	}
	switch set {
	case 0:
	case 3:
		cert, err := tls.LoadX509KeyPair(c.PeerTLSCert, c.PeerTLSKey)
		if err != nil {
			return nil, fmt.Errorf("--peer-tls-cert/--peer-tls-key: %w", err)
		}
		pem, err := os.ReadFile(c.PeerTLSCA)
		if err != nil {
			return nil, fmt.Errorf("--peer-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--peer-tls-ca: no certificate in %s", c.PeerTLSCA)
		}
		s.peerRoots = pool
		s.peerTLS = &tls.Config{
			Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		}
	default:
		return nil, errors.New("--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together")
	}
	if c.GossipKey != "" {
		key, err := base64.StdEncoding.DecodeString(c.GossipKey)
		if err != nil {
			return nil, fmt.Errorf("--gossip-key: not base64: %w", err)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("--gossip-key: %d bytes; it must be 16, 24 or 32 (AES-128/192/256)", n)
		}
		s.gossipKey = key
	}
	return s, nil
}

// checkExposure refuses to serve beyond loopback without authentication,
// unless --insecure says so (then it is logged loudly by the caller).
func (c *Config) checkExposure(s *security) error {
	if s.authSecret != nil || c.Insecure {
		return nil
	}
	for name, addr := range map[string]string{"--api-addr": c.APIAddr, "--raft-addr": c.RaftAddr, "--gossip-addr": c.GossipAddr} {
		if !loopbackOnly(addr) {
			return fmt.Errorf("%s %s listens beyond loopback without authentication: set --auth-secret-file "+
				"(and TLS, see SECURITY.md), or --insecure to run open on purpose", name, addr)
		}
	}
	return nil
}

// loopbackOnly: the address binds only a loopback IP (or localhost).
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// operatorToken is a short-lived operator token the node signs for its own
// calls to other nodes (placement progress, drains).
func (s *security) operatorToken() (string, error) {
	if s.authSecret == nil {
		return "", nil
	}
	now := time.Now()
	return auth.Issue(s.authSecret, auth.Claims{Role: auth.RoleOperator, Issued: now, Expires: now.Add(10 * time.Minute)})
}

// peerClientTLS is how the node dials other nodes' API when it is TLS:
// trusting the peer CA if one is configured, else the system's roots.
func (s *security) peerClientTLS() *tls.Config {
	if s.apiTLS == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.peerRoots, MinVersion: tls.VersionTLS12}
}
