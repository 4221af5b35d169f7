package jwtauthn

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"skein.dev/skein/internal/proxy/filter"
	"skein.dev/skein/internal/proxy/resource"
)

// FilterName is the dynamic metadata namespace verified payloads are published in.
const FilterName = "envoy.filters.http.jwt_authn"

// Filter is a compiled jwt_authn filter. It is immutable; inline key sets are parsed
// once when it is built.
type Filter struct {
	cfg      *resource.JWTAuthn
	local    map[string]*jose.JSONWebKeySet // by provider name
	localErr map[string]error
	cache    *Cache
	log      *slog.Logger
	now      func() time.Time
}

// New compiles a filter. cache fetches remote key sets (it may be nil when no provider
// uses one); now is the clock (time.Now when nil).
func New(cfg *resource.JWTAuthn, cache *Cache, log *slog.Logger, now func() time.Time) *Filter {
	f := &Filter{cfg: cfg, local: map[string]*jose.JSONWebKeySet{}, localErr: map[string]error{}, cache: cache, log: log, now: now}
	if f.now == nil {
		f.now = time.Now
	}
	for name, p := range cfg.Providers {
		if p.LocalJWKS != "" {
			f.local[name], f.localErr[name] = ParseJWKS([]byte(p.LocalJWKS))
		}
	}
	return f
}

// location is where one provider found a token.
type location struct {
	header string // canonical header name; "" for a query parameter
	param  string
	token  string
	bad    bool // the header is there but lacks the required prefix
}

// result of checking one provider's token.
type result struct {
	loc   *location
	token *Token
	err   error // nil: verified; ErrMissing: no token
}

// evaluation memoizes per-provider results of one request.
type evaluation struct {
	f       *Filter
	ctx     context.Context
	r       *http.Request
	results map[string]*result
}

// DecodeHTTP verifies the request's tokens against the first rule whose path matches.
func (f *Filter) DecodeHTTP(req *filter.Request) *filter.LocalReply {
	r := req.HTTP
	f.stripOutputHeaders(r)
	if f.cfg.BypassCORSPreflight && r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		return nil
	}
	var rule *resource.JWTRule
	for i := range f.cfg.Rules {
		ru := &f.cfg.Rules[i]
		if (ru.PathKind == resource.PathPrefix && strings.HasPrefix(r.URL.Path, ru.Path)) || (ru.PathKind == resource.PathExact && r.URL.Path == ru.Path) {
			rule = ru
			break
		}
	}
	if rule == nil || rule.Requires == nil {
		return nil
	}
	ev := &evaluation{f: f, ctx: r.Context(), r: r, results: map[string]*result{}}
	if err := ev.check(rule.Requires); err != nil {
		return unauthorized(r, err)
	}
	for _, name := range sortedNames(ev.results) {
		res := ev.results[name]
		if res.err == nil {
			f.publish(req, f.cfg.Providers[name], res)
		}
	}
	return nil
}

// check evaluates a requirement as Envoy does: a provider needs its token present and
// valid; requires_any passes when one alternative passes, and with allow_missing when
// every token that is there is valid; requires_all needs every part.
func (ev *evaluation) check(req *resource.JWTRequirement) error {
	switch req.Kind {
	case resource.JWTRequireProvider:
		return ev.provider(req.Provider).err
	case resource.JWTAllowMissing, resource.JWTAllowMissingOrFailed:
		return ev.allowMissing(req.Kind == resource.JWTAllowMissingOrFailed, nil)
	case resource.JWTRequireAll:
		for i := range req.Subs {
			if err := ev.check(&req.Subs[i]); err != nil {
				return err
			}
		}
		return nil
	case resource.JWTRequireAny:
		var firstErr error
		allowMissing, allowFailed := false, false
		var providers []string
		for i := range req.Subs {
			s := &req.Subs[i]
			switch s.Kind {
			case resource.JWTAllowMissing:
				allowMissing = true
				continue
			case resource.JWTAllowMissingOrFailed:
				allowFailed = true
				continue
			case resource.JWTRequireProvider:
				providers = append(providers, s.Provider)
			}
			err := ev.check(s)
			if err == nil {
				return nil
			}
			if firstErr == nil || (firstErr == ErrMissing && err != ErrMissing) {
				firstErr = err
			}
		}
		if allowFailed {
			return nil
		}
		if allowMissing {
			return ev.allowMissing(false, providers)
		}
		return firstErr
	}
	return ErrBadFormat
}

// allowMissing passes unless one of the providers' tokens is present and invalid (all
// providers when names is nil); with failedToo it always passes.
func (ev *evaluation) allowMissing(failedToo bool, names []string) error {
	if failedToo {
		return nil
	}
	if names == nil {
		names = sortedNames(ev.f.cfg.Providers)
	}
	for _, n := range names {
		if res := ev.provider(n); res.err != nil && res.err != ErrMissing {
			return res.err
		}
	}
	return nil
}

func (ev *evaluation) provider(name string) *result {
	if res, ok := ev.results[name]; ok {
		return res
	}
	p := ev.f.cfg.Providers[name]
	res := &result{}
	ev.results[name] = res
	locs := extract(p, ev.r)
	switch {
	case len(locs) == 0:
		res.err = ErrMissing
		return res
	case locs[0].bad:
		res.loc, res.err = &locs[0], ErrBadFormat
		return res
	}
	res.loc = &locs[0]
	tok, err := Parse(locs[0].token)
	if err != nil {
		res.err = err
		return res
	}
	if err := tok.CheckClaims(p.Issuer, p.Audiences, ev.f.now()); err != nil {
		res.err = err
		return res
	}
	keys, err := ev.f.keys(ev.ctx, p)
	if err != nil {
		ev.f.log.Debug("jwt: no key set", "provider", name, "error", err)
		res.err = ErrJWKSFetch
		return res
	}
	if err := tok.Verify(keys); err != nil {
		res.err = err
		return res
	}
	res.token = tok
	return res
}

func (f *Filter) keys(ctx context.Context, p *resource.JWTProvider) (*jose.JSONWebKeySet, error) {
	if p.LocalJWKS != "" {
		return f.local[p.Name], f.localErr[p.Name]
	}
	if f.cache == nil {
		return nil, fmt.Errorf("no key cache for %s", p.RemoteURI)
	}
	return f.cache.Keys(ctx, p.RemoteURI, p.RemoteTimeout, p.CacheDuration)
}

// extract finds a provider's tokens: its headers and parameters, or by default
// "Authorization: Bearer" and ?access_token=.
func extract(p *resource.JWTProvider, r *http.Request) []location {
	headers, params := p.FromHeaders, p.FromParams
	if len(headers) == 0 && len(params) == 0 {
		headers = []resource.JWTHeader{{Name: "Authorization", ValuePrefix: "Bearer "}}
		params = []string{"access_token"}
	}
	var out []location
	for _, h := range headers {
		for _, v := range r.Header.Values(h.Name) {
			tok, ok := strings.CutPrefix(v, h.ValuePrefix)
			if !ok && h.Name == "Authorization" && len(v) >= len(h.ValuePrefix) && strings.EqualFold(v[:len(h.ValuePrefix)], h.ValuePrefix) {
				tok, ok = v[len(h.ValuePrefix):], true // the Bearer scheme is case-insensitive
			}
			out = append(out, location{header: h.Name, token: strings.TrimSpace(tok), bad: !ok})
		}
	}
	if len(params) > 0 {
		q := r.URL.Query()
		for _, name := range params {
			for _, v := range q[name] {
				out = append(out, location{param: name, token: v})
			}
		}
	}
	return out
}

// publish makes a verified token visible: payload metadata for RBAC, the optional
// payload and claim headers, and the token removed from its header unless forward.
func (f *Filter) publish(req *filter.Request, p *resource.JWTProvider, res *result) {
	r := req.HTTP
	if p.PayloadInMetadata != "" {
		req.Metadata.Set(FilterName, p.PayloadInMetadata, normalize(res.token.Claims, p.SpaceDelimitedClaims))
	}
	if p.ForwardPayloadHeader != "" {
		r.Header.Set(p.ForwardPayloadHeader, res.token.RawPayload)
	}
	for _, c := range p.ClaimToHeaders {
		if v, ok := claimString(res.token.Claims, c.Claim); ok {
			r.Header.Set(c.Header, v)
		}
	}
	// Envoy removes a forwarded-false token from its header; a query parameter is
	// left in place (as Envoy does).
	if !p.Forward && res.loc.header != "" {
		r.Header.Del(res.loc.header)
	}
}

// stripOutputHeaders removes the headers this filter writes, so a caller cannot set
// them itself and pass them off as verified (skein hardening; Envoy overwrites them
// only when a token verifies).
func (f *Filter) stripOutputHeaders(r *http.Request) {
	for _, p := range f.cfg.Providers {
		if p.ForwardPayloadHeader != "" {
			r.Header.Del(p.ForwardPayloadHeader)
		}
		for _, c := range p.ClaimToHeaders {
			r.Header.Del(c.Header)
		}
	}
}

// normalize splits the space-delimited claims (scope, permission) into lists, as
// Envoy's normalize_payload_in_metadata does.
func normalize(claims map[string]any, spaceDelimited []string) map[string]any {
	if len(spaceDelimited) == 0 {
		return claims
	}
	out := make(map[string]any, len(claims))
	for k, v := range claims {
		out[k] = v
	}
	for _, name := range spaceDelimited {
		if s, ok := out[name].(string); ok {
			var list []any
			for _, f := range strings.Fields(s) {
				list = append(list, f)
			}
			out[name] = list
		}
	}
	return out
}

// claimString reads a claim (nested with ".") of type string, number or bool.
func claimString(claims map[string]any, name string) (string, bool) {
	var v any = claims
	for _, part := range strings.Split(name, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = obj[part]; !ok {
			return "", false
		}
	}
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

func unauthorized(r *http.Request, err error) *filter.LocalReply {
	realm := fmt.Sprintf("Bearer realm=\"http://%s%s\"", r.Host, r.URL.Path)
	if err != ErrMissing {
		realm += ", error=\"invalid_token\""
	}
	return &filter.LocalReply{
		Status:     http.StatusUnauthorized,
		Body:       err.Error(),
		GRPCStatus: 16, // UNAUTHENTICATED
		Header:     http.Header{"Www-Authenticate": {realm}},
	}
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Name is the filter's Envoy name.
func (f *Filter) Name() string { return FilterName }
