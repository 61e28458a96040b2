package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready {
			http.Error(w, "shard 3 has no leader", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		ready bool
		code  int
		say   string
	}{
		{"flag, ready", []string{"--api-addr", srv.Listener.Addr().String()}, nil, true, 0, ""},
		{"environment, listen address without host", nil, map[string]string{"FRONTDESK_API_ADDR": ":" + port}, true, 0, ""},
		{"unspecified host", []string{"--api-addr", "0.0.0.0:" + port}, nil, true, 0, ""},
		{"not ready", []string{"--api-addr", srv.Listener.Addr().String()}, nil, false, 1, "no leader"},
		{"nobody listening", []string{"--api-addr", "127.0.0.1:1"}, nil, true, 1, "healthcheck:"},
		{"bad address", []string{"--api-addr", "nope"}, nil, true, 2, "--api-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready = tc.ready
			var stderr bytes.Buffer
			if code := healthcheck(tc.args, env(tc.env), &stderr); code != tc.code {
				t.Fatalf("exit %d, want %d (stderr: %s)", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.say) {
				t.Fatalf("stderr %q does not say %q", stderr.String(), tc.say)
			}
		})
	}
}
