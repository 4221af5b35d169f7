package istio

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"

	security "istio.io/api/security/v1beta1"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// RequestAuthentication translates a checked security.istio.io RequestAuthentication
// spec of the object nn into the model.
func RequestAuthentication(nn model.NamespacedName, spec *security.RequestAuthentication) (*model.RequestAuthentication, []strict.Issue) {
	var is issues
	out := &model.RequestAuthentication{NamespacedName: nn, Selector: selector(spec.GetSelector(), "spec.selector", &is)}
	for i, r := range spec.GetJwtRules() {
		path := strict.Index("spec.jwtRules", i)
		if r == nil {
			is.add(path, "rule must not be null")
			continue
		}
		out.JWTRules = append(out.JWTRules, jwtRule(r, path, &is))
	}
	return out, is
}

var headerName = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)

func jwtRule(r *security.JWTRule, path string, is *issues) model.JWTRule {
	out := model.JWTRule{
		Issuer:                r.GetIssuer(),
		Audiences:             r.GetAudiences(),
		JWKSURI:               r.GetJwksUri(),
		JWKS:                  r.GetJwks(),
		FromParams:            r.GetFromParams(),
		ForwardOriginalToken:  r.GetForwardOriginalToken(),
		OutputPayloadToHeader: r.GetOutputPayloadToHeader(),
	}
	if r.GetTimeout() != nil {
		out.Timeout = r.GetTimeout().AsDuration()
		if out.Timeout <= 0 {
			is.add(strict.Field(path, "timeout"), "timeout must be positive")
		}
	}
	if out.Issuer == "" {
		is.add(strict.Field(path, "issuer"), "issuer is required")
	}
	for i, a := range out.Audiences {
		if a == "" {
			is.add(strict.Index(strict.Field(path, "audiences"), i), "empty audience")
		}
	}
	switch {
	case out.JWKSURI != "" && out.JWKS != "":
		is.add(strict.Field(path, "jwks"), "only one of jwks and jwksUri may be set")
	case out.JWKSURI != "":
		u, err := url.Parse(out.JWKSURI)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			is.add(strict.Field(path, "jwksUri"), "%q is not an http:// or https:// URL", out.JWKSURI)
		}
	case out.JWKS != "":
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal([]byte(out.JWKS), &set); err != nil || len(set.Keys) == 0 {
			is.add(strict.Field(path, "jwks"), "not a JSON Web Key Set ({\"keys\": [...]})")
		}
	default:
		// Istio would try OpenID discovery from the issuer; skein needs the keys named.
		is.add(path, "one of jwks or jwksUri is required (skein does not do OpenID discovery)")
	}
	for i, h := range r.GetFromHeaders() {
		p := strict.Index(strict.Field(path, "fromHeaders"), i)
		if h.GetName() == "" {
			is.add(strict.Field(p, "name"), "name is required")
		}
		out.FromHeaders = append(out.FromHeaders, model.JWTHeader{Name: h.GetName(), Prefix: h.GetPrefix()})
	}
	for i, p := range out.FromParams {
		if p == "" {
			is.add(strict.Index(strict.Field(path, "fromParams"), i), "empty parameter name")
		}
	}
	if h := out.OutputPayloadToHeader; h != "" && !headerName.MatchString(h) {
		is.add(strict.Field(path, "outputPayloadToHeader"), "invalid header name %q", h)
	}
	seen := map[string]bool{}
	for i, c := range r.GetOutputClaimToHeaders() {
		p := strict.Index(strict.Field(path, "outputClaimToHeaders"), i)
		switch {
		case c.GetHeader() == "":
			is.add(strict.Field(p, "header"), "header is required")
		case !headerName.MatchString(c.GetHeader()):
			is.add(strict.Field(p, "header"), "invalid header name %q", c.GetHeader())
		case seen[http.CanonicalHeaderKey(c.GetHeader())]:
			is.add(strict.Field(p, "header"), "header %q is set twice", c.GetHeader())
		}
		seen[http.CanonicalHeaderKey(c.GetHeader())] = true
		if c.GetClaim() == "" {
			is.add(strict.Field(p, "claim"), "claim is required")
		}
		out.OutputClaimToHeaders = append(out.OutputClaimToHeaders, model.ClaimToHeader{Header: c.GetHeader(), Claim: c.GetClaim()})
	}
	return out
}
