package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// methods lists every frontdesk.v1 procedure with its input type.
func methods(t *testing.T) map[string]protoreflect.MethodDescriptor {
	t.Helper()
	out := map[string]protoreflect.MethodDescriptor{}
	protoregistry.GlobalFiles.RangeFilesByPackage("frontdesk.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				out[fmt.Sprintf("/%s/%s", sd.FullName(), md.Name())] = md
			}
		}
		return true
	})
	if len(out) < 20 {
		t.Fatalf("found only %d procedures", len(out))
	}
	return out
}

func TestPolicyCoversEveryProcedure(t *testing.T) {
	for p := range methods(t) {
		if _, ok := Policy[p]; !ok {
			t.Errorf("procedure %s has no rule in Policy (it would be denied to everyone)", p)
		}
	}
}

// server mounts every service with no implementation behind the
// interceptor: a call that passes auth gets Unimplemented.
func server(t *testing.T, i *Interceptor) *httptest.Server {
	mux := http.NewServeMux()
	o := connect.WithInterceptors(i)
	mux.Handle(frontdeskv1connect.NewDispatchServiceHandler(frontdeskv1connect.UnimplementedDispatchServiceHandler{}, o))
	mux.Handle(frontdeskv1connect.NewAgentServiceHandler(frontdeskv1connect.UnimplementedAgentServiceHandler{}, o))
	mux.Handle(frontdeskv1connect.NewAdminServiceHandler(frontdeskv1connect.UnimplementedAdminServiceHandler{}, o))
	mux.Handle(frontdeskv1connect.NewEventServiceHandler(frontdeskv1connect.UnimplementedEventServiceHandler{}, o))
	mux.Handle(frontdeskv1connect.NewClusterServiceHandler(frontdeskv1connect.UnimplementedClusterServiceHandler{}, o))
	mux.Handle(frontdeskv1connect.NewReplicaServiceHandler(frontdeskv1connect.UnimplementedReplicaServiceHandler{}, o))
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// request builds a JSON request for md naming merchant m1 and agent a1
// wherever such fields exist (top level or one message down).
func request(t *testing.T, md protoreflect.MethodDescriptor) []byte {
	b, err := protojson.Marshal(requestMsg(md))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// requestMsg is request's message.
func requestMsg(md protoreflect.MethodDescriptor) *dynamicpb.Message {
	msg := dynamicpb.NewMessage(md.Input())
	fill := func(m protoreflect.Message) {
		for _, name := range []protoreflect.Name{"merchant_id", "agent_id", "session_id", "buyer_id", "request_id", "group_id"} {
			if f := m.Descriptor().Fields().ByName(name); f != nil && f.Kind() == protoreflect.StringKind {
				v := map[protoreflect.Name]string{"merchant_id": "m1", "agent_id": "a1"}[name]
				if v == "" {
					v = "x"
				}
				m.Set(f, protoreflect.ValueOfString(v))
			}
		}
	}
	fill(msg)
	fields := msg.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() {
			inner := msg.NewField(f).Message()
			fill(inner)
			msg.Set(f, protoreflect.ValueOfMessage(inner))
		}
	}
	return msg
}

// call posts a unary Connect JSON request and returns the Connect code ("ok" on success).
func call(t *testing.T, base, procedure string, body []byte, token string) string {
	req, _ := http.NewRequest(http.MethodPost, base+procedure, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return "ok"
	}
	var e struct{ Code string }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return e.Code
}

// watch opens the event stream and returns the code of its end.
func watch(t *testing.T, base, merchant, token string) string {
	c := frontdeskv1connect.NewEventServiceClient(http.DefaultClient, base)
	req := connect.NewRequest(&pb.WatchRequest{MerchantId: merchant})
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	stream, err := c.Watch(context.Background(), req)
	if err != nil {
		return connect.CodeOf(err).String()
	}
	defer stream.Close()
	for stream.Receive() {
	}
	if err := stream.Err(); err != nil {
		return connect.CodeOf(err).String()
	}
	return "ok"
}

// TestEveryProcedureDenies: every procedure × (no token, bad signature,
// expired, wrong role, other merchant, other agent) is Unauthenticated or
// PermissionDenied, and the right token passes (to Unimplemented here).
func TestEveryProcedureDenies(t *testing.T) {
	now := time.Now()
	i, err := NewInterceptor(secret)
	if err != nil {
		t.Fatal(err)
	}
	s := server(t, i)
	tok := func(c Claims) string {
		if c.Expires.IsZero() {
			c.Expires = now.Add(time.Hour)
		}
		return mustIssue(t, secret, c)
	}
	forRole := func(r Role, merchant, agent string) string {
		switch r {
		case RoleOperator:
			return tok(Claims{Role: r})
		case RoleAgent:
			return tok(Claims{Role: r, Merchants: []string{merchant}, Agent: agent})
		}
		return tok(Claims{Role: r, Merchants: []string{merchant}})
	}
	all := []Role{RoleIMService, RoleAgent, RoleSupervisor, RoleOperator}
	for p, md := range methods(t) {
		rule := Policy[p]
		if rule.Public {
			continue
		}
		t.Run(strings.TrimPrefix(p, "/frontdesk.v1."), func(t *testing.T) {
			do := func(token string) string {
				if md.IsStreamingServer() {
					return watch(t, s.URL, "m1", token)
				}
				return call(t, s.URL, p, request(t, md), token)
			}
			allowed := rule.Roles[0]
			good := forRole(allowed, "m1", "a1")
			otherClaims, err := Verify(secret, good, now)
			if err != nil {
				t.Fatal(err)
			}
			other := mustIssue(t, []byte(strings.Repeat("k", 32)), *otherClaims) // signed with another secret
			expired := good
			{
				c, _ := Verify(secret, good, now)
				c.Expires = now.Add(-time.Second)
				expired = mustIssue(t, secret, *c)
			}
			want := map[string]string{"no token": "unauthenticated", "bad signature": "unauthenticated", "expired": "unauthenticated"}
			got := map[string]string{"no token": do(""), "bad signature": do(other), "expired": do(expired)}
			for _, r := range all {
				if !slices.Contains(rule.Roles, r) {
					want["wrong role "+string(r)] = "permission_denied"
					got["wrong role "+string(r)] = do(forRole(r, "m1", "a1"))
				}
			}
			if rule.Scoped {
				for _, r := range rule.Roles {
					want["other merchant as "+string(r)] = "permission_denied"
					got["other merchant as "+string(r)] = do(forRole(r, "m2", "a1"))
				}
			}
			if rule.OwnAgent && slices.Contains(rule.Roles, RoleAgent) {
				want["other agent"] = "permission_denied"
				got["other agent"] = do(forRole(RoleAgent, "m1", "a2"))
			}
			want["allowed"] = "unimplemented"
			got["allowed"] = do(good)
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%s: want %s, got %s", k, w, got[k])
				}
			}
		})
	}
}

func TestActingAgentFromContext(t *testing.T) {
	ctx := context.WithValue(context.Background(), claimsKey{}, &Claims{Role: RoleAgent, Agent: "a7"})
	if ActingAgent(ctx) != "a7" || ActingAgent(context.Background()) != "" {
		t.Fatal("ActingAgent")
	}
	ctx = context.WithValue(context.Background(), claimsKey{}, &Claims{Role: RoleSupervisor})
	if ActingAgent(ctx) != "" {
		t.Fatal("a supervisor acts for no particular agent")
	}
}

// TestAuthorizeEveryProcedure: Authorize, which checks calls carried
// inside a Batch, holds each procedure's request to the same rule as the
// interceptor: a wrong role, another merchant or another agent is
// PermissionDenied, the right token passes, and without claims (auth off)
// everything passes.
func TestAuthorizeEveryProcedure(t *testing.T) {
	as := func(c Claims) context.Context { return context.WithValue(context.Background(), claimsKey{}, &c) }
	forRole := func(r Role, merchant, agent string) context.Context {
		switch r {
		case RoleOperator:
			return as(Claims{Role: r})
		case RoleAgent:
			return as(Claims{Role: r, Merchants: []string{merchant}, Agent: agent})
		}
		return as(Claims{Role: r, Merchants: []string{merchant}})
	}
	all := []Role{RoleIMService, RoleAgent, RoleSupervisor, RoleOperator}
	for p, md := range methods(t) {
		rule := Policy[p]
		msg := requestMsg(md)
		code := func(ctx context.Context) string {
			if err := Authorize(ctx, p, msg); err != nil {
				return connect.CodeOf(err).String()
			}
			return "ok"
		}
		want := map[string]string{"auth off": "ok"}
		got := map[string]string{"auth off": code(context.Background())}
		if !rule.Public {
			want["allowed"] = "ok"
			got["allowed"] = code(forRole(rule.Roles[0], "m1", "a1"))
			for _, r := range all {
				if !slices.Contains(rule.Roles, r) {
					want["wrong role "+string(r)] = "permission_denied"
					got["wrong role "+string(r)] = code(forRole(r, "m1", "a1"))
				}
			}
		}
		if rule.Scoped {
			for _, r := range rule.Roles {
				want["other merchant as "+string(r)] = "permission_denied"
				got["other merchant as "+string(r)] = code(forRole(r, "m2", "a1"))
			}
		}
		if rule.OwnAgent && slices.Contains(rule.Roles, RoleAgent) {
			want["other agent"] = "permission_denied"
			got["other agent"] = code(forRole(RoleAgent, "m1", "a2"))
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s, %s: want %s, got %s", p, k, w, got[k])
			}
		}
	}
	if err := Authorize(as(Claims{Role: RoleSupervisor}), "/frontdesk.v1.DispatchService/Nope", &pb.ConsultRequest{}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a procedure without a rule: want permission_denied, got %v", err)
	}
}
