package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestIssueVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := Claims{Role: RoleAgent, Merchants: []string{"m1"}, Agent: "a1", Expires: now.Add(time.Hour), Issued: now}
	tok, err := Issue(secret, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(secret, tok, now)
	if err != nil || got.Role != RoleAgent || got.Agent != "a1" || !got.Covers("m1") || got.Covers("m2") {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	cases := []struct {
		name  string
		token string
		now   time.Time
		want  error
	}{
		{"empty", "", now, ErrNoToken},
		{"expired", tok, now.Add(time.Hour), ErrExpired},
		{"other secret", mustIssue(t, []byte(strings.Repeat("z", 32)), c), now, ErrBadSignature},
		{"payload swapped", swapPayload(t, tok), now, ErrBadSignature},
		{"no prefix", strings.TrimPrefix(tok, "fd1."), now, ErrMalformed},
		{"no signature", tok[:strings.LastIndexByte(tok, '.')], now, ErrMalformed},
		{"garbage signature", tok[:strings.LastIndexByte(tok, '.')] + ".!!", now, ErrMalformed},
		{"huge", "fd1." + strings.Repeat("a", 5000), now, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(secret, tc.token, tc.now); !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
}

func mustIssue(t *testing.T, s []byte, c Claims) string {
	t.Helper()
	tok, err := Issue(s, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// swapPayload replaces the claims with an operator's, keeping the signature.
func swapPayload(t *testing.T, tok string) string {
	other := mustIssue(t, secret, Claims{Role: RoleOperator, Expires: time.Unix(1_900_000_000, 0)})
	return other[:strings.LastIndexByte(other, '.')] + tok[strings.LastIndexByte(tok, '.'):]
}

func TestClaimsValid(t *testing.T) {
	exp := time.Unix(1_900_000_000, 0)
	bad := []Claims{
		{Role: "root", Expires: exp},
		{Role: RoleIMService, Expires: exp},
		{Role: RoleAgent, Merchants: []string{"m1"}, Expires: exp},
		{Role: RoleAgent, Merchants: []string{"*"}, Agent: "a", Expires: exp},
		{Role: RoleAgent, Merchants: []string{"m1", "m2"}, Agent: "a", Expires: exp},
		{Role: RoleOperator, Merchants: []string{"m1"}, Expires: exp},
		{Role: RoleSupervisor, Merchants: []string{"m1"}, Agent: "a", Expires: exp},
		{Role: RoleSupervisor, Merchants: []string{"m1"}},
	}
	for _, c := range bad {
		if _, err := Issue(secret, c); err == nil {
			t.Errorf("issued invalid claims %+v", c)
		}
	}
	if _, err := Issue([]byte("short"), Claims{Role: RoleOperator, Expires: exp}); err == nil {
		t.Error("issued with a short secret")
	}
}
