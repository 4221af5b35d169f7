package jwtauthn

import (
	"testing"
	"time"
)

const fuzzJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`

// FuzzParse feeds arbitrary tokens through parsing, claim checks and verification:
// none of them may panic, and only a verifiable token may pass.
func FuzzParse(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ.eyJpc3MiOiJ4In0.c2ln")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOiJzb29uIn0.AAAA")
	keys, err := ParseJWKS([]byte(fuzzJWKS))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := Parse(raw)
		if err != nil {
			return
		}
		_ = tok.CheckClaims("x", []string{"aud"}, time.Unix(1700000000, 0))
		if tok.Verify(keys) == nil {
			t.Fatalf("a fuzzed token verified: %q", raw)
		}
	})
}

// FuzzParseJWKS: arbitrary key sets never panic.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(fuzzJWKS))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseJWKS(data)
	})
}
