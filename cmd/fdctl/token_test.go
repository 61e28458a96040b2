package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/auth"
)

func TestTokenIssue(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef-secret")
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(string) string { return "" }
	var out, errb bytes.Buffer
	code := run([]string{"token", "issue", "--secret-file", f, "--role", "agent", "--merchant", "shop1", "--agent", "alice", "--ttl", "1h"}, &out, &errb, env)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	c, err := auth.Verify(secret, strings.TrimSpace(out.String()), time.Now())
	if err != nil || c.Role != auth.RoleAgent || c.Agent != "alice" || !c.Covers("shop1") || c.Covers("shop2") {
		t.Fatalf("issued token: %+v %v", c, err)
	}
	if exp := time.Until(c.Expires); exp < 59*time.Minute || exp > time.Hour {
		t.Fatalf("ttl: expires in %v", exp)
	}
	for _, bad := range [][]string{
		{"token", "issue", "--role", "operator"},
		{"token", "issue", "--secret-file", f, "--role", "root"},
		{"token", "issue", "--secret-file", f, "--role", "agent", "--merchant", "*", "--agent", "a"},
		{"token", "issue", "--secret-file", f, "--role", "operator", "--ttl", "-1s"},
	} {
		out.Reset()
		errb.Reset()
		if code := run(bad, &out, &errb, env); code == 0 {
			t.Errorf("%v: want a failure, got a token %q", bad, out.String())
		}
	}
}
