package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheck is `frontdeskd healthcheck`: it asks the node on this host
// for /readyz and exits 0 if and only if the answer is 200 OK (the node
// belongs to a formed cluster and every replica it holds has a leader),
// else 1, saying why on stderr. Containers use it as their health check:
// a FROM-scratch image has no curl. The address comes from --api-addr,
// else FRONTDESK_API_ADDR, else :7420; a listen address without a host
// (":7420", "0.0.0.0:7420") is asked on loopback.
func healthcheck(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("frontdeskd healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := getenv("FRONTDESK_API_ADDR")
	if addr == "" {
		addr = ":7420"
	}
	fs.StringVar(&addr, "api-addr", addr, "the node's API address (default: FRONTDESK_API_ADDR, else :7420)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	url, err := readyzURL(addr)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s: %s %s\n", url, resp.Status, body)
		return 1
	}
	return 0
}

// readyzURL is the /readyz URL of a node listening on addr.
func readyzURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--api-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}
