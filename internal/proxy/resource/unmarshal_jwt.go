package resource

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
)

// JWTAuthn is a decoded envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication.
type JWTAuthn struct {
	Providers           map[string]*JWTProvider
	Rules               []JWTRule
	BypassCORSPreflight bool
}

// JWTProvider says how to find, verify and publish one issuer's tokens.
type JWTProvider struct {
	Name      string
	Issuer    string
	Audiences []string
	// Exactly one of RemoteURI and LocalJWKS is set. The proxy fetches RemoteURI
	// itself (the http_uri's cluster is not used) and caches it for CacheDuration.
	RemoteURI     string
	RemoteTimeout time.Duration
	CacheDuration time.Duration
	LocalJWKS     string
	// Where the token is; both empty: Authorization "Bearer " and ?access_token=.
	FromHeaders          []JWTHeader
	FromParams           []string
	Forward              bool
	ForwardPayloadHeader string
	PayloadInMetadata    string
	SpaceDelimitedClaims []string
	ClaimToHeaders       []JWTClaimToHeader
}

// JWTHeader is a header carrying a token after ValuePrefix.
type JWTHeader struct {
	Name        string // canonical
	ValuePrefix string
}

// JWTClaimToHeader copies a claim of a verified token into a request header.
type JWTClaimToHeader struct {
	Header string // canonical
	Claim  string
}

// JWTRule applies Requires to requests whose path matches.
type JWTRule struct {
	PathKind PathKind // PathPrefix or PathExact
	Path     string
	Requires *JWTRequirement // nil: no requirement
}

// JWTRequirementKind says which field of a JWTRequirement is set.
type JWTRequirementKind int

const (
	JWTRequireProvider JWTRequirementKind = iota
	JWTRequireAny
	JWTRequireAll
	JWTAllowMissing
	JWTAllowMissingOrFailed
)

// JWTRequirement is Envoy's JwtRequirement.
type JWTRequirement struct {
	Kind     JWTRequirementKind
	Provider string
	Subs     []JWTRequirement // Any, All
}

func jwtAuthn(pb *jwtv3.JwtAuthentication) (*JWTAuthn, error) {
	j := &JWTAuthn{Providers: map[string]*JWTProvider{}, BypassCORSPreflight: pb.GetBypassCorsPreflight()}
	names := make([]string, 0, len(pb.GetProviders()))
	for n := range pb.GetProviders() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p, err := jwtProvider(n, pb.GetProviders()[n])
		if err != nil {
			return nil, fmt.Errorf("providers[%q].%w", n, err)
		}
		j.Providers[n] = p
	}
	for i, r := range pb.GetRules() {
		rule := JWTRule{}
		switch ps := r.GetMatch().GetPathSpecifier().(type) {
		case *routev3.RouteMatch_Prefix:
			rule.PathKind, rule.Path = PathPrefix, ps.Prefix
		case *routev3.RouteMatch_Path:
			rule.PathKind, rule.Path = PathExact, ps.Path
		default:
			return nil, fmt.Errorf("rules[%d].match: prefix or path is required", i)
		}
		if r.GetMatch().GetCaseSensitive() != nil || len(r.GetMatch().GetHeaders()) > 0 {
			return nil, fmt.Errorf("rules[%d].match: only prefix and path are supported", i)
		}
		if r.GetRequires() != nil {
			req, err := jwtRequirement(r.GetRequires(), j.Providers, 0)
			if err != nil {
				return nil, fmt.Errorf("rules[%d].requires: %w", i, err)
			}
			rule.Requires = &req
		}
		j.Rules = append(j.Rules, rule)
	}
	return j, nil
}

func jwtProvider(name string, pb *jwtv3.JwtProvider) (*JWTProvider, error) {
	p := &JWTProvider{
		Name:                 name,
		Issuer:               pb.GetIssuer(),
		Audiences:            pb.GetAudiences(),
		FromParams:           pb.GetFromParams(),
		Forward:              pb.GetForward(),
		ForwardPayloadHeader: pb.GetForwardPayloadHeader(),
		PayloadInMetadata:    pb.GetPayloadInMetadata(),
		SpaceDelimitedClaims: pb.GetNormalizePayloadInMetadata().GetSpaceDelimitedClaims(),
	}
	switch {
	case pb.GetRemoteJwks() != nil:
		rj := pb.GetRemoteJwks()
		u, err := url.Parse(rj.GetHttpUri().GetUri())
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("remote_jwks.http_uri.uri %q: want an http or https URL", rj.GetHttpUri().GetUri())
		}
		p.RemoteURI = u.String()
		p.RemoteTimeout = rj.GetHttpUri().GetTimeout().AsDuration()
		if p.RemoteTimeout <= 0 {
			return nil, errors.New("remote_jwks.http_uri.timeout must be positive")
		}
		p.CacheDuration = 5 * time.Minute // Envoy's default
		if cd := rj.GetCacheDuration(); cd != nil {
			p.CacheDuration = cd.AsDuration()
			if p.CacheDuration <= 0 {
				return nil, errors.New("remote_jwks.cache_duration must be positive")
			}
		}
	case pb.GetLocalJwks() != nil:
		if pb.GetLocalJwks().GetInlineString() == "" {
			return nil, errors.New("local_jwks: inline_string is required")
		}
		p.LocalJWKS = pb.GetLocalJwks().GetInlineString()
	default:
		return nil, errors.New("one of remote_jwks or local_jwks is required")
	}
	for i, h := range pb.GetFromHeaders() {
		if h.GetName() == "" {
			return nil, fmt.Errorf("from_headers[%d].name: %w", i, errMissing)
		}
		p.FromHeaders = append(p.FromHeaders, JWTHeader{Name: canonicalHeader(h.GetName()), ValuePrefix: h.GetValuePrefix()})
	}
	for i, c := range pb.GetClaimToHeaders() {
		if c.GetHeaderName() == "" || c.GetClaimName() == "" {
			return nil, fmt.Errorf("claim_to_headers[%d]: header_name and claim_name are required", i)
		}
		p.ClaimToHeaders = append(p.ClaimToHeaders, JWTClaimToHeader{Header: canonicalHeader(c.GetHeaderName()), Claim: c.GetClaimName()})
	}
	return p, nil
}

func jwtRequirement(pb *jwtv3.JwtRequirement, providers map[string]*JWTProvider, depth int) (JWTRequirement, error) {
	var r JWTRequirement
	if depth > maxRuleDepth {
		return r, errTooDeep
	}
	var subs []*jwtv3.JwtRequirement
	switch t := pb.GetRequiresType().(type) {
	case *jwtv3.JwtRequirement_ProviderName:
		if providers[t.ProviderName] == nil {
			return r, fmt.Errorf("provider_name %q is not a provider", t.ProviderName)
		}
		r.Kind, r.Provider = JWTRequireProvider, t.ProviderName
		return r, nil
	case *jwtv3.JwtRequirement_RequiresAny:
		r.Kind, subs = JWTRequireAny, t.RequiresAny.GetRequirements()
	case *jwtv3.JwtRequirement_RequiresAll:
		r.Kind, subs = JWTRequireAll, t.RequiresAll.GetRequirements()
	case *jwtv3.JwtRequirement_AllowMissing:
		r.Kind = JWTAllowMissing
		return r, nil
	case *jwtv3.JwtRequirement_AllowMissingOrFailed:
		r.Kind = JWTAllowMissingOrFailed
		return r, nil
	default:
		return r, errors.New("a requirement type is required")
	}
	if len(subs) < 2 {
		return r, errors.New("requires_any/requires_all need at least 2 requirements")
	}
	for i, s := range subs {
		sub, err := jwtRequirement(s, providers, depth+1)
		if err != nil {
			return r, fmt.Errorf("requirements[%d]: %w", i, err)
		}
		r.Subs = append(r.Subs, sub)
	}
	return r, nil
}
