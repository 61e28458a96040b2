package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

const dialTimeout = 2 * time.Second

// acceptOne returns the next connection accepted by l, failing the test
// after 5s.
func acceptOne(t testing.TB, l raft.StreamLayer) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(5 * time.Second):
		t.Fatalf("Accept: no connection within 5s")
		return nil
	}
}

func mustLayer(t testing.TB, m *Mux, shard uint32) raft.StreamLayer {
	t.Helper()
	l, err := m.Layer(shard)
	if err != nil {
		t.Fatalf("Layer(%d): %v", shard, err)
	}
	return l
}

func mustDial(t testing.TB, l raft.StreamLayer, to *Mux) net.Conn {
	t.Helper()
	c, err := l.Dial(raft.ServerAddress(to.Addr().String()), dialTimeout)
	if err != nil {
		t.Fatalf("Dial(%s): %v", to.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends msg from a to b and back, failing the test if either side
// does not receive it intact.
func exchange(t testing.TB, a, b net.Conn, msg string) {
	t.Helper()
	for _, p := range [][2]net.Conn{{a, b}, {b, a}} {
		if _, err := p[0].Write([]byte(msg)); err != nil {
			t.Fatalf("writing %q: %v", msg, err)
		}
		p[1].SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(p[1], got); err != nil || string(got) != msg {
			t.Fatalf("want %q on the other side, got (%q, %v)", msg, got, err)
		}
	}
}

// rawDial opens a plain TCP connection to m, bypassing any layer.
func rawDial(t testing.TB, m *Mux) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", m.Addr().String(), dialTimeout)
	if err != nil {
		t.Fatalf("dialing %s: %v", m.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRouting(t *testing.T) {
	server, client := newTestMux(t), newTestMux(t)
	shards := []uint32{1, 300} // 300 takes a two-byte varint
	serverLayers := map[uint32]raft.StreamLayer{}
	for _, s := range shards {
		serverLayers[s] = mustLayer(t, server, s)
		if got, want := serverLayers[s].Addr().String(), server.Addr().String(); got != want {
			t.Errorf("layer Addr: want the mux address %s, got %s", want, got)
		}
	}
	// Dial every shard before accepting any, so a misrouted connection would
	// be the first one a layer sees.
	outs := map[uint32]net.Conn{}
	for _, s := range shards {
		outs[s] = mustDial(t, mustLayer(t, client, s), server)
	}
	for _, s := range shards {
		exchange(t, outs[s], acceptOne(t, serverLayers[s]), fmt.Sprintf("shard %d", s))
	}
	if st := server.Stats(); st.Accepted != 2 || st.Routed != 2 || st.UnknownShard != 0 || st.BadHeader != 0 {
		t.Errorf("server stats: want 2 accepted and routed, none dropped, got %+v", st)
	}
}

func TestUnknownShardClosed(t *testing.T) {
	server, client := newTestMux(t), newTestMux(t)
	cl := mustLayer(t, client, 9)
	expectClosedByPeer(t, mustDial(t, cl, server))
	eventually(t, 5*time.Second, func() error {
		if st := server.Stats(); st.UnknownShard != 1 {
			return fmt.Errorf("want 1 connection dropped for an unknown shard, stats %+v", st)
		}
		return nil
	})
	// Once the shard is registered, the retry gets through.
	sl := mustLayer(t, server, 9)
	exchange(t, mustDial(t, cl, server), acceptOne(t, sl), "retried")
}

func TestBadHeaderClosed(t *testing.T) {
	for _, tt := range []struct {
		name string
		send []byte
	}{
		{"silent", nil}, // closed by the header timeout
		{"wrong magic", []byte{0x00, 0x01}},
		{"TLS client hello", []byte{0x16, 0x03, 0x01, 0x00, 0x05}},
		{"truncated", []byte{headerV1, 0x80}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			server := newTestMux(t, WithHeaderTimeout(100*time.Millisecond))
			mustLayer(t, server, 0)
			c := rawDial(t, server)
			if _, err := c.Write(tt.send); err != nil {
				t.Fatalf("writing % x: %v", tt.send, err)
			}
			expectClosedByPeer(t, c)
			eventually(t, 5*time.Second, func() error {
				if st := server.Stats(); st.BadHeader != 1 || st.Routed != 0 {
					return fmt.Errorf("want 1 bad header and nothing routed, stats %+v", st)
				}
				return nil
			})
		})
	}
}

func TestLayerRegisteredTwice(t *testing.T) {
	m := newTestMux(t)
	first := mustLayer(t, m, 4)
	if _, err := m.Layer(4); !errors.Is(err, ErrShardRegistered) {
		t.Fatalf("second Layer(4): want ErrShardRegistered, got %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("closing layer 4: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Errorf("closing layer 4 again: want nil, got %v", err)
	}
	mustLayer(t, m, 4) // free again after Close
}

func TestLayerClose(t *testing.T) {
	server, client := newTestMux(t), newTestMux(t)
	s1, s2 := mustLayer(t, server, 1), mustLayer(t, server, 2)
	c1, c2 := mustLayer(t, client, 1), mustLayer(t, client, 2)

	out := mustDial(t, c1, server)
	in := acceptOne(t, s1)
	exchange(t, out, in, "before close")

	acceptErr := make(chan error, 1)
	go func() {
		_, err := s1.Accept()
		acceptErr <- err
	}()
	if err := s1.Close(); err != nil {
		t.Fatalf("closing layer 1: %v", err)
	}
	select {
	case err := <-acceptErr:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("pending Accept after Close: want ErrClosed, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("pending Accept did not return within 5s of Close")
	}
	if _, err := s1.Accept(); !errors.Is(err, ErrClosed) {
		t.Errorf("Accept after Close: want ErrClosed, got %v", err)
	}
	if _, err := s1.Dial(raft.ServerAddress(client.Addr().String()), dialTimeout); !errors.Is(err, ErrClosed) {
		t.Errorf("Dial after Close: want ErrClosed, got %v", err)
	}
	// The accepted connection was closed: quietly on this side, visibly on the peer.
	if _, err := in.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read on a connection closed by its layer: want io.EOF, got %v", err)
	}
	expectClosedByPeer(t, out)

	// Shard 1 is now unknown; shard 2 is untouched.
	expectClosedByPeer(t, mustDial(t, c1, server))
	exchange(t, mustDial(t, c2, server), acceptOne(t, s2), "shard 2 still served")
	eventually(t, 5*time.Second, func() error {
		if st := server.Stats(); st.UnknownShard != 1 || st.Routed != 2 {
			return fmt.Errorf("want 1 dropped for shard 1 and 2 routed, stats %+v", st)
		}
		return nil
	})
}

func TestMuxCloseLeavesNothingRunning(t *testing.T) {
	checkLeaks := checkNoLeaks(t)
	server, client := newTestMux(t), newTestMux(t)
	s1, s2 := mustLayer(t, server, 1), mustLayer(t, server, 2)
	c1 := mustLayer(t, client, 1)

	out := mustDial(t, c1, server)
	in := acceptOne(t, s1)
	exchange(t, out, in, "established")
	silent := rawDial(t, server) // still in its header when the mux closes
	eventually(t, 5*time.Second, func() error {
		if st := server.Stats(); st.Accepted != 2 {
			return fmt.Errorf("want 2 accepted, stats %+v", st)
		}
		return nil
	})
	acceptErr := make(chan error, 1)
	go func() {
		_, err := s2.Accept()
		acceptErr <- err
	}()

	start := time.Now()
	if err := server.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Well under the 5s header timeout the silent connection would otherwise get.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v, want it prompt", d)
	}
	select {
	case err := <-acceptErr:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Accept on a layer of a closed mux: want ErrClosed, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Accept did not return within 5s of Mux.Close")
	}
	expectClosedByPeer(t, out)
	expectClosedByPeer(t, silent)
	if _, err := server.Layer(3); !errors.Is(err, ErrClosed) {
		t.Errorf("Layer after Close: want ErrClosed, got %v", err)
	}
	if err := server.Close(); err != nil {
		t.Errorf("second Close: want nil, got %v", err)
	}
	if _, err := c1.Dial(raft.ServerAddress(server.Addr().String()), dialTimeout); err == nil {
		t.Errorf("Dial to a closed mux: want an error, got a connection")
	}

	client.Close()
	for _, c := range []net.Conn{out, in, silent} {
		c.Close()
	}
	checkLeaks()
}

func TestNotAdvertisable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	defer ln.Close()
	_, err = NewMux(ln, &net.TCPAddr{IP: net.IPv4zero, Port: 7000})
	if !errors.Is(err, ErrNotAdvertisable) {
		t.Errorf("NewMux advertising 0.0.0.0: want ErrNotAdvertisable, got %v", err)
	}
}

func TestTLS(t *testing.T) {
	cfg := testTLSConfig(t)
	// The short header timeout is for the plain peer below, whose 2-byte
	// header is too short for a TLS record header and so never fails parsing.
	server := newTestMux(t, WithTLS(cfg), WithHeaderTimeout(200*time.Millisecond))
	client := newTestMux(t, WithTLS(cfg))
	sl, cl := mustLayer(t, server, 5), mustLayer(t, client, 5)
	exchange(t, mustDial(t, cl, server), acceptOne(t, sl), "over mutual TLS")

	// A peer without TLS fails the handshake and is dropped like a bad header.
	plain := mustLayer(t, newTestMux(t), 5)
	c, err := plain.Dial(raft.ServerAddress(server.Addr().String()), dialTimeout)
	if err != nil {
		t.Fatalf("plain Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	expectClosedByPeer(t, c)
	eventually(t, 5*time.Second, func() error {
		if st := server.Stats(); st.BadHeader != 1 || st.Routed != 1 {
			return fmt.Errorf("want 1 routed and 1 bad header, stats %+v", st)
		}
		return nil
	})
}

// testTLSConfig returns a config for mutual TLS on 127.0.0.1 with one
// self-signed certificate trusted as both server and client.
func testTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "frontdesk test node"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("creating certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}
