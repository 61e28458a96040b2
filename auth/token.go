// Package auth authenticates and authorizes API calls: bearer tokens signed
// with the cluster's secret (HMAC-SHA256) that carry a role, a merchant
// scope, for agents the agent id, and an expiry; and one Connect
// interceptor that checks every procedure, streams included, against one
// table (policy.go).
//
// Token format: "fd1." + base64url(JSON claims) + "." + base64url(HMAC-SHA256(
// secret, "fd1." + base64url(JSON claims))), without padding. Tokens are
// bearer credentials: anyone holding one acts with its claims until it
// expires, so keep TTLs short and rotate the secret to revoke all of them
// (SECURITY.md).
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Role is what a token's holder is.
type Role string

// The roles. An IM service dispatches buyers for its merchants; an agent
// acts on its own status and sessions; a supervisor configures and watches
// its merchants; an operator runs the cluster and sees no merchant data.
const (
	RoleIMService  Role = "im-service"
	RoleAgent      Role = "agent"
	RoleSupervisor Role = "supervisor"
	RoleOperator   Role = "operator"
)

// AllMerchants in Claims.Merchants scopes a token to every merchant.
const AllMerchants = "*"

// MinSecretBytes is the shortest secret accepted.
const MinSecretBytes = 32

const prefix = "fd1."

// Errors of Verify; each is Unauthenticated on the wire.
var (
	ErrNoToken      = errors.New("auth: no bearer token")
	ErrMalformed    = errors.New("auth: malformed token")
	ErrBadSignature = errors.New("auth: bad token signature")
	ErrExpired      = errors.New("auth: token expired")
)

// Claims are what a token says about its holder.
type Claims struct {
	Role      Role      `json:"role"`
	Merchants []string  `json:"merchants,omitempty"` // ["*"] for all
	Agent     string    `json:"agent,omitempty"`     // agents only
	Expires   time.Time `json:"exp"`
	Issued    time.Time `json:"iat"`
}

// Valid checks claims for issuing: a known role, a merchant scope for
// merchant roles, an agent id exactly for agents, an expiry.
func (c *Claims) Valid() error {
	switch c.Role {
	case RoleIMService, RoleSupervisor:
		if len(c.Merchants) == 0 {
			return fmt.Errorf("auth: role %s needs a merchant scope", c.Role)
		}
	case RoleAgent:
		if len(c.Merchants) != 1 || c.Merchants[0] == AllMerchants {
			return errors.New("auth: an agent token names exactly one merchant")
		}
		if c.Agent == "" {
			return errors.New("auth: an agent token names the agent")
		}
	case RoleOperator:
		if len(c.Merchants) > 0 {
			return errors.New("auth: an operator token has no merchant scope")
		}
	default:
		return fmt.Errorf("auth: unknown role %q", c.Role)
	}
	if c.Role != RoleAgent && c.Agent != "" {
		return fmt.Errorf("auth: only agent tokens name an agent")
	}
	if c.Expires.IsZero() {
		return errors.New("auth: a token needs an expiry")
	}
	return nil
}

// Covers reports whether the claims' merchant scope includes merchant.
func (c *Claims) Covers(merchant string) bool {
	return slices.Contains(c.Merchants, AllMerchants) || slices.Contains(c.Merchants, merchant)
}

// Issue signs claims with secret.
func Issue(secret []byte, c Claims) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", fmt.Errorf("auth: secret is %d bytes; at least %d are needed", len(secret), MinSecretBytes)
	}
	if err := c.Valid(); err != nil {
		return "", err
	}
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signed := prefix + base64.RawURLEncoding.EncodeToString(body)
	return signed + "." + base64.RawURLEncoding.EncodeToString(sign(secret, signed)), nil
}

func sign(secret []byte, signed string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// Verify checks a token's signature (in constant time) and expiry against
// now and returns its claims.
func Verify(secret []byte, token string, now time.Time) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	if !strings.HasPrefix(token, prefix) || len(token) > 4096 {
		return nil, ErrMalformed
	}
	dot := strings.LastIndexByte(token, '.')
	if dot <= len(prefix) {
		return nil, ErrMalformed
	}
	signed, sig := token[:dot], token[dot+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return nil, ErrMalformed
	}
	if !hmac.Equal(got, sign(secret, signed)) {
		return nil, ErrBadSignature
	}
	body, err := base64.RawURLEncoding.DecodeString(signed[len(prefix):])
	if err != nil {
		return nil, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, ErrMalformed
	}
	if err := c.Valid(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !now.Before(c.Expires) {
		return nil, ErrExpired
	}
	return &c, nil
}
