package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

type claimsKey struct{}

// FromContext returns the caller's verified claims (nil when auth is off).
func FromContext(ctx context.Context) *Claims {
	c, _ := ctx.Value(claimsKey{}).(*Claims)
	return c
}

// ActingAgent is the agent a call acts for under ActsOnSession rules: the
// token's agent for agent tokens, "" otherwise (no restriction).
func ActingAgent(ctx context.Context) string {
	if c := FromContext(ctx); c != nil && c.Role == RoleAgent {
		return c.Agent
	}
	return ""
}

// Interceptor enforces Policy on every procedure, unary and streaming:
// Unauthenticated without a valid token, PermissionDenied for a wrong
// role, another merchant or another agent. Denied calls never reach the
// handler, so they change nothing.
type Interceptor struct {
	secret []byte
	now    func() time.Time
}

// NewInterceptor checks tokens signed with secret.
func NewInterceptor(secret []byte) (*Interceptor, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("auth: secret is %d bytes; at least %d are needed", len(secret), MinSecretBytes)
	}
	return &Interceptor{secret: secret, now: time.Now}, nil
}

// authenticate verifies the bearer token and the role for a procedure.
func (i *Interceptor) authenticate(procedure string, h interface{ Get(string) string }) (*Claims, Rule, error) {
	rule, ok := Policy[procedure]
	if !ok {
		return nil, rule, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("auth: %s is not open to any role", procedure))
	}
	if rule.Public {
		return nil, rule, nil
	}
	header := h.Get("Authorization")
	token, found := strings.CutPrefix(header, "Bearer ")
	if !found {
		token = ""
	}
	c, err := Verify(i.secret, strings.TrimSpace(token), i.now())
	if err != nil {
		return nil, rule, connect.NewError(connect.CodeUnauthenticated, err)
	}
	if err := checkRole(c, rule, procedure); err != nil {
		return nil, rule, err
	}
	return c, rule, nil
}

// checkRole: the claims' role must be one of the rule's.
func checkRole(c *Claims, rule Rule, procedure string) error {
	if !slices.Contains(rule.Roles, c.Role) {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("auth: role %s may not call %s", c.Role, procedure))
	}
	return nil
}

// Authorize checks msg, a request of procedure carried inside another call
// (DispatchService.Batch), against procedure's rule and the caller's claims
// in ctx, exactly as the Interceptor checks procedure's own calls: the
// role, the merchant scope and the own agent. It returns nil when ctx
// holds no claims (auth off: the Interceptor put none there), and a
// *connect.Error otherwise: PermissionDenied (procedure not in Policy, a
// wrong role, another merchant or agent) or InvalidArgument (no merchant
// named where the rule needs one). Safe for concurrent use.
func Authorize(ctx context.Context, procedure string, msg proto.Message) error {
	rule, ok := Policy[procedure]
	if !ok {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("auth: %s is not open to any role", procedure))
	}
	c := FromContext(ctx)
	if c == nil || rule.Public {
		return nil
	}
	if err := checkRole(c, rule, procedure); err != nil {
		return err
	}
	return authorize(c, rule, msg)
}

// authorize checks a request message against the rule and claims.
func authorize(c *Claims, rule Rule, msg any) error {
	if c == nil || (!rule.Scoped && !rule.OwnAgent) {
		return nil
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return connect.NewError(connect.CodeInternal, errors.New("auth: request is not a protobuf message"))
	}
	if rule.Scoped {
		merchant := findString(m.ProtoReflect(), "merchant_id")
		if merchant == "" {
			return connect.NewError(connect.CodeInvalidArgument, errors.New("merchant_id: must not be empty"))
		}
		if !c.Covers(merchant) {
			return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("auth: merchant %q is outside the token's scope", merchant))
		}
	}
	if rule.OwnAgent && c.Role == RoleAgent {
		if agent := findString(m.ProtoReflect(), "agent_id"); agent != c.Agent {
			return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("auth: agent %q may act only for itself, not %q", c.Agent, agent))
		}
	}
	return nil
}

// findString returns the string field called name at the top of m, or in
// one of m's singular message fields (e.g. ConsultRequest.consult.merchant_id).
func findString(m protoreflect.Message, name protoreflect.Name) string {
	fields := m.Descriptor().Fields()
	if f := fields.ByName(name); f != nil && f.Kind() == protoreflect.StringKind && !f.IsList() {
		return m.Get(f).String()
	}
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() && m.Has(f) {
			inner := m.Get(f).Message()
			if g := inner.Descriptor().Fields().ByName(name); g != nil && g.Kind() == protoreflect.StringKind && !g.IsList() {
				return inner.Get(g).String()
			}
		}
	}
	return ""
}

// WrapUnary enforces the policy on unary calls.
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		c, rule, err := i.authenticate(req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		if err := authorize(c, rule, req.Any()); err != nil {
			return nil, err
		}
		if c != nil {
			ctx = context.WithValue(ctx, claimsKey{}, c)
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient leaves client streams alone.
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler enforces the policy on streams: the token before
// the handler runs, the merchant on every message received.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		c, rule, err := i.authenticate(conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		if c != nil {
			ctx = context.WithValue(ctx, claimsKey{}, c)
		}
		return next(ctx, &checkedConn{StreamingHandlerConn: conn, claims: c, rule: rule})
	}
}

// checkedConn authorizes each request message of a stream as it arrives.
type checkedConn struct {
	connect.StreamingHandlerConn
	claims *Claims
	rule   Rule
}

func (s *checkedConn) Receive(msg any) error {
	if err := s.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	return authorize(s.claims, s.rule, msg)
}
