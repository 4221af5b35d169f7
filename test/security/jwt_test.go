package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// issuer signs tokens with RSA and EC keys and serves their JWKS on 127.0.0.1.
type issuer struct {
	rsaKey, rogueKey *rsa.PrivateKey
	ecKey            *ecdsa.PrivateKey
	srv              *httptest.Server
	fetches          atomic.Int64
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	is := &issuer{}
	var err error
	if is.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if is.rogueKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if is.ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &is.rsaKey.PublicKey, KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
		{Key: &is.ecKey.PublicKey, KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
	}}
	body, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func claims(iss, sub string, extra map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": iss, "sub": sub, "aud": "httpbin", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func TestRequestAuthentication(t *testing.T) {
	is := newIssuer(t)
	e := newEnv(t)
	jwks := is.srv.URL + "/jwks.json"
	e.apply(fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: https://issuer.test
    jwksUri: %s
    audiences: [httpbin]
    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]
    outputPayloadToHeader: x-jwt-payload
  - issuer: query-issuer
    jwksUri: %s
    fromParams: [token]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: foo}
spec:
  rules:
  - from: [{source: {requestPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/secure*"]}}]
  - to: [{operation: {paths: ["/public*"]}}]
  - to: [{operation: {paths: ["/admin"]}}]
    when: [{key: "request.auth.claims[groups]", values: [admin]}]
  - to: [{operation: {paths: ["/alice"]}}]
    from: [{source: {requestPrincipals: ["https://issuer.test/alice"]}}]
  - to: [{operation: {paths: ["/aud"]}}]
    when: [{key: request.auth.audiences, values: [httpbin]}, {key: request.auth.presenter, values: ["app-*"]}]
  - to: [{operation: {paths: ["/scope"]}}]
    when: [{key: "request.auth.claims[scope]", values: [write]}, {key: "request.auth.claims[org][team]", values: [blue]}]
`, jwks, jwks))

	const iss = "https://issuer.test"
	now := time.Now()
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	valid := is.sign(t, jose.RS256, is.rsaKey, "rsa-1", claims(iss, "alice", map[string]any{"groups": []string{"admin", "dev"}}))
	tests := []struct {
		name     string
		req      request
		want     int
		wantBody string
	}{
		{"valid RS256", request{path: "/secure", header: bearer(valid)}, 200, ""},
		{"valid ES256", request{path: "/secure", header: bearer(is.sign(t, jose.ES256, is.ecKey, "ec-1", claims(iss, "bob", nil)))}, 200, ""},
		{"expired", request{path: "/secure", header: bearer(is.sign(t, jose.RS256, is.rsaKey, "rsa-1", claims(iss, "alice", map[string]any{"exp": now.Add(-time.Hour).Unix()})))}, 401, "Jwt is expired"},
		{"not yet valid", request{path: "/secure", header: bearer(is.sign(t, jose.RS256, is.rsaKey, "rsa-1", claims(iss, "alice", map[string]any{"nbf": now.Add(time.Hour).Unix()})))}, 401, "Jwt not yet valid"},
		{"wrong issuer", request{path: "/secure", header: bearer(is.sign(t, jose.RS256, is.rsaKey, "rsa-1", claims("https://evil.test", "alice", nil)))}, 401, "Jwt issuer is not configured"},
		{"wrong audience", request{path: "/secure", header: bearer(is.sign(t, jose.RS256, is.rsaKey, "rsa-1", claims(iss, "alice", map[string]any{"aud": "other"})))}, 401, "Audiences in Jwt are not allowed"},
		{"bad signature", request{path: "/secure", header: bearer(is.sign(t, jose.RS256, is.rogueKey, "rsa-1", claims(iss, "alice", nil)))}, 401, "Jwt verification fails"},
		{"tampered payload", request{path: "/secure", header: bearer(tamper(valid))}, 401, "Jwt verification fails"},
		{"unknown key", request{path: "/secure", header: bearer(is.sign(t, jose.RS256, is.rogueKey, "rsa-unknown", claims(iss, "alice", nil)))}, 401, "Jwks doesn't have key to match kid or alg from Jwt"},
		{"malformed", request{path: "/secure", header: bearer("not-a-jwt")}, 401, "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{"missing token, public path", request{path: "/public"}, 200, ""},
		{"missing token, secured path", request{path: "/secure"}, 403, "RBAC: access denied"},
		{"invalid token on a public path still 401", request{path: "/public", header: bearer("a.b.c")}, 401, ""},
		{"token in query param", request{path: "/secure?token=" + is.sign(t, jose.RS256, is.rsaKey, "rsa-1", claims("query-issuer", "carol", nil))}, 200, ""},
		{"default access_token param", request{path: "/secure?access_token=" + valid}, 200, ""},
		{"claims match", request{path: "/admin", header: bearer(valid)}, 200, ""},
		{"claims mismatch", request{path: "/admin", header: bearer(is.sign(t, jose.RS256, is.rsaKey, "rsa-1", claims(iss, "dave", map[string]any{"groups": []string{"dev"}})))}, 403, "RBAC: access denied"},
		{"request principal iss/sub", request{path: "/alice", header: bearer(valid)}, 200, ""},
		{"audiences and presenter", request{path: "/aud", header: bearer(is.sign(t, jose.RS256, is.rsaKey, "rsa-1", claims(iss, "eve", map[string]any{"azp": "app-7"})))}, 200, ""},
		{"presenter mismatch", request{path: "/aud", header: bearer(is.sign(t, jose.RS256, is.rsaKey, "rsa-1", claims(iss, "eve", map[string]any{"azp": "web-7"})))}, 403, "RBAC: access denied"},
		{"space-delimited scope and nested claim", request{path: "/scope", header: bearer(is.sign(t, jose.ES256, is.ecKey, "ec-1", claims(iss, "eve", map[string]any{"scope": "read write", "org": map[string]any{"team": "blue"}})))}, 200, ""},
		{"nested claim mismatch", request{path: "/scope", header: bearer(is.sign(t, jose.ES256, is.ecKey, "ec-1", claims(iss, "eve", map[string]any{"scope": "read write", "org": map[string]any{"team": "red"}})))}, 403, "RBAC: access denied"},
		{"request principal other sub", request{path: "/alice", header: bearer(is.sign(t, jose.RS256, is.rsaKey, "rsa-1", claims(iss, "mallory", nil)))}, 403, "RBAC: access denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			code, body := e.do(tt.req)
			if code != tt.want {
				t.Fatalf("status %d, want %d (body %q)", code, tt.want, body)
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
		})
	}

	t.Run("token stripped, claims and payload forwarded", func(t *testing.T) {
		e.t = t
		if code, _ := e.do(request{path: "/secure", header: map[string]string{"Authorization": "Bearer " + valid, "X-Jwt-Sub": "spoofed"}}); code != 200 {
			t.Fatalf("status %d", code)
		}
		h := e.lastSeen()
		if got := h.Get("Authorization"); got != "" {
			t.Errorf("backend saw Authorization %q, want it removed (forwardOriginalToken false)", got)
		}
		if got := h.Get("X-Jwt-Sub"); got != "alice" {
			t.Errorf("x-jwt-sub = %q, want alice", got)
		}
		if got := h.Get("X-Jwt-Payload"); got == "" || !strings.HasPrefix(valid, strings.Split(valid, ".")[0]+"."+got) {
			t.Errorf("x-jwt-payload = %q, want the token's payload segment", got)
		}
	})
	if n := is.fetches.Load(); n < 1 {
		t.Errorf("JWKS fetched %d times", n)
	}
}

// tamper replaces the payload of a signed token (a different subject) and keeps the
// signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	payload, _ := json.Marshal(claims("https://issuer.test", "mallory", map[string]any{"groups": []string{"admin"}}))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}
