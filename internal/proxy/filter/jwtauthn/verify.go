// Package jwtauthn is the proxy's envoy.filters.http.jwt_authn: it finds JWTs where the
// providers say (headers with a prefix, query parameters), verifies them (RS256/384/512,
// PS256/384/512, ES256/384/512 with go-jose) against inline or fetched key sets, checks
// issuer, lifetime and audiences, and publishes the payload as dynamic metadata for
// RBAC. An invalid token is answered 401 with Envoy's message; a missing one passes
// when the requirement allows it.
package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Verification failures, with Envoy's messages (jwt_verify_lib status strings): the
// 401 body is the message.
var (
	ErrMissing        = errors.New("Jwt is missing")
	ErrBadFormat      = errors.New("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")
	ErrBadHeader      = errors.New("Jwt header is an invalid JSON")
	ErrBadPayload     = errors.New("Jwt payload is an invalid JSON")
	ErrUnknownIssuer  = errors.New("Jwt issuer is not configured")
	ErrExpired        = errors.New("Jwt is expired")
	ErrNotYetValid    = errors.New("Jwt not yet valid")
	ErrAudience       = errors.New("Audiences in Jwt are not allowed")
	ErrUnknownKey     = errors.New("Jwks doesn't have key to match kid or alg from Jwt")
	ErrBadSignature   = errors.New("Jwt verification fails")
	ErrAlgorithm      = errors.New("Jwt algorithm is not supported")
	ErrJWKSFetch      = errors.New("Jwks remote fetch is failed")
	ErrBadJWKS        = errors.New("Jwks is an invalid JSON")
	ErrMultipleTokens = errors.New("Jwt verification fails: several tokens in one request")
)

// ClockSkew is Envoy's default clock_skew_seconds.
const ClockSkew = 60 * time.Second

// Algorithms the verifier accepts. "none" and HMAC are refused: a public key set
// cannot verify them.
var Algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
}

// Token is a parsed, not yet verified JWT.
type Token struct {
	Raw        string
	jws        *jose.JSONWebSignature
	Claims     map[string]any
	RawPayload string // the base64url payload segment, as received
}

// Parse splits and decodes a compact JWT without verifying it.
func Parse(raw string) (*Token, error) {
	if strings.Count(raw, ".") != 2 {
		return nil, ErrBadFormat
	}
	jws, err := jose.ParseSigned(raw, Algorithms)
	if err != nil {
		if strings.Contains(err.Error(), "algorithm") {
			return nil, ErrAlgorithm
		}
		return nil, ErrBadHeader
	}
	if len(jws.Signatures) != 1 {
		return nil, ErrBadFormat
	}
	seg := raw[strings.IndexByte(raw, '.')+1 : strings.LastIndexByte(raw, '.')]
	payload, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, ErrBadPayload
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return nil, ErrBadPayload
	}
	return &Token{Raw: raw, jws: jws, Claims: claims, RawPayload: seg}, nil
}

// CheckClaims checks issuer (when issuer is set), exp and nbf (with ClockSkew), and that
// the aud claim names one of audiences (when audiences is set), in Envoy's order.
func (t *Token) CheckClaims(issuer string, audiences []string, now time.Time) error {
	if iss, _ := t.Claims["iss"].(string); issuer != "" && iss != issuer {
		return ErrUnknownIssuer
	}
	if exp, ok, err := numericDate(t.Claims, "exp"); err != nil {
		return ErrBadPayload
	} else if ok && now.After(exp.Add(ClockSkew)) {
		return ErrExpired
	}
	if nbf, ok, err := numericDate(t.Claims, "nbf"); err != nil {
		return ErrBadPayload
	} else if ok && now.Add(ClockSkew).Before(nbf) {
		return ErrNotYetValid
	}
	if len(audiences) > 0 {
		if !audienceAllowed(t.Claims["aud"], audiences) {
			return ErrAudience
		}
	}
	return nil
}

func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	f, ok := v.(float64)
	if !ok {
		return time.Time{}, false, fmt.Errorf("%s is not a number", name)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true, nil
}

func audienceAllowed(aud any, allowed []string) bool {
	var got []string
	switch a := aud.(type) {
	case string:
		got = []string{a}
	case []any:
		for _, e := range a {
			if s, ok := e.(string); ok {
				got = append(got, s)
			}
		}
	}
	for _, g := range got {
		// Envoy ignores a scheme and a trailing slash when comparing audiences.
		for _, w := range allowed {
			if normAudience(g) == normAudience(w) {
				return true
			}
		}
	}
	return false
}

func normAudience(a string) string {
	a = strings.TrimPrefix(strings.TrimPrefix(a, "https://"), "http://")
	return strings.TrimSuffix(a, "/")
}

// Verify checks the signature with the key set: the key named by the token's kid, or
// without a kid every key usable with the token's algorithm.
func (t *Token) Verify(keys *jose.JSONWebKeySet) error {
	h := t.jws.Signatures[0].Header
	var candidates []jose.JSONWebKey
	if h.KeyID != "" {
		candidates = keys.Key(h.KeyID)
	} else {
		candidates = keys.Keys
	}
	tried := false
	for _, k := range candidates {
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !keyFits(k, h.Algorithm) {
			continue
		}
		tried = true
		if _, err := t.jws.Verify(k.Key); err == nil {
			return nil
		}
	}
	if !tried {
		return ErrUnknownKey
	}
	return ErrBadSignature
}

// keyFits reports whether a key's type can verify an algorithm.
func keyFits(k jose.JSONWebKey, alg string) bool {
	if !k.Valid() || !k.IsPublic() {
		return false
	}
	switch k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	}
	return false
}

// ParseJWKS parses a JSON Web Key Set, keeping only public signature keys.
func ParseJWKS(data []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadJWKS, err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrBadJWKS)
	}
	return &set, nil
}
