package translate

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"skein.dev/skein/internal/model"
)

// JWTFilterName is Envoy's JWT authentication filter.
const JWTFilterName = "envoy.filters.http.jwt_authn"

// defaultJWKSTimeout and jwksCacheDuration are Istio's.
const (
	defaultJWKSTimeout = 5 * time.Second
	jwksCacheDuration  = 5 * time.Minute
)

// jwtFilter builds the jwt_authn filter of the proxy's inbound HTTP listeners from the
// RequestAuthentications that select its workload, as Istio does: one provider per JWT
// rule (sorted by issuer, named origins-<i>), each required when its token is present
// (allow_missing otherwise); with several providers, any one of them, or all of them
// each present-or-missing. Verified payloads go to the filter's metadata under
// "payload", which RBAC request.auth.* matchers read. nil when no rule applies.
func (b *builder) jwtFilter() *hcm.HttpFilter {
	if b.proxy == nil {
		return nil
	}
	var rules []model.JWTRule
	for _, ra := range b.mesh.RequestAuthenticationsFor(b.proxy.Workload, b.workloadLabels()) {
		rules = append(rules, ra.JWTRules...)
	}
	if len(rules) == 0 {
		return nil
	}
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].Issuer < rules[j].Issuer })
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}, BypassCorsPreflight: true}
	var inner, outer []*jwtv3.JwtRequirement
	for i, r := range rules {
		name := fmt.Sprintf("origins-%d", i)
		cfg.Providers[name] = jwtProvider(r)
		inner = append(inner, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{
			Requirements: []*jwtv3.JwtRequirement{
				{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}},
				{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}},
			},
		}}})
		outer = append(outer, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}})
	}
	req := inner[0]
	if len(inner) > 1 {
		outer = append(outer, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAll{RequiresAll: &jwtv3.JwtRequirementAndList{Requirements: inner}}})
		req = &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: outer}}}
	}
	cfg.Rules = []*jwtv3.RequirementRule{{
		Match:           &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: req},
	}}
	return &hcm.HttpFilter{Name: JWTFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: b.toAny(cfg)}}
}

func jwtProvider(r model.JWTRule) *jwtv3.JwtProvider {
	p := &jwtv3.JwtProvider{
		Issuer:               r.Issuer,
		Audiences:            r.Audiences,
		Forward:              r.ForwardOriginalToken,
		ForwardPayloadHeader: r.OutputPayloadToHeader,
		PayloadInMetadata:    JWTFilterPayloadKey,
		NormalizePayloadInMetadata: &jwtv3.JwtProvider_NormalizePayload{
			SpaceDelimitedClaims: []string{"permission", "scope"},
		},
		FromParams: r.FromParams,
	}
	for _, h := range r.FromHeaders {
		p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.Name, ValuePrefix: h.Prefix})
	}
	for _, c := range r.OutputClaimToHeaders {
		p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.Header, ClaimName: c.Claim})
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = defaultJWKSTimeout
	}
	if r.JWKSURI != "" {
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
			HttpUri: &corev3.HttpUri{
				Uri:              r.JWKSURI,
				HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: jwksCluster(r.JWKSURI)},
				Timeout:          durationpb.New(timeout),
			},
			CacheDuration: durationpb.New(jwksCacheDuration),
		}}
	} else {
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: r.JWKS},
		}}
	}
	return p
}

// jwksCluster names the cluster Istio would use for a JWKS URI outside the mesh
// (outbound|<port>||<host>). The skein proxy dials the URI itself (docs/XDS.md).
func jwksCluster(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "outbound|80||unknown"
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	host := u.Hostname()
	if net.ParseIP(host) == nil && host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("outbound|%s||%s", port, host)
}
