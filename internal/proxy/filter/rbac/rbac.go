// Package rbac evaluates Envoy RBAC configurations (envoy.filters.http.rbac and
// envoy.filters.network.rbac) compiled from resource.RBAC. An Engine is immutable and
// safe for concurrent use; evaluation allocates nothing but the path it normalizes.
package rbac

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"skein.dev/skein/internal/proxy/filter"
	"skein.dev/skein/internal/proxy/resource"
	"skein.dev/skein/internal/proxy/route"
	"skein.dev/skein/internal/proxy/stats"
)

// DeniedBody is Envoy's body for a request an RBAC filter denies.
const DeniedBody = "RBAC: access denied"

// Filter names, the dynamic metadata namespaces the filters write to.
const (
	HTTPFilterName    = "envoy.filters.http.rbac"
	NetworkFilterName = "envoy.filters.network.rbac"
	// AccessLogHint is Envoy's metadata key a LOG (Istio AUDIT) match sets to true.
	AccessLogHint = "access_log_hint"
	// AuditPolicyKey is skein's own key beside it: the matching policy's name.
	AuditPolicyKey = "access_log_policy"
)

// deniedDetails is Envoy's response code details of a denied request.
func deniedDetails(policy string) string {
	if policy == "" {
		policy = "none"
	}
	return "rbac_access_denied_matched_policy[" + policy + "]"
}

// AuditPolicy returns the AUDIT policy a filter recorded in md, or "".
func AuditPolicy(md filter.Metadata) string {
	for _, ns := range []string{HTTPFilterName, NetworkFilterName} {
		if hint, _ := md[ns][AccessLogHint].(bool); hint {
			p, _ := md[ns][AuditPolicyKey].(string)
			return p
		}
	}
	return ""
}

// Input is everything a policy may look at. HTTP is nil for a TCP connection: then
// header, path and metadata rules never match.
type Input struct {
	Conn     *filter.Conn
	HTTP     *http.Request
	Path     string // normalized path without query (HTTP)
	RemoteIP netip.Addr
	Metadata filter.Metadata
}

// Engine evaluates one RBAC configuration.
type Engine struct {
	cfg *resource.RBAC
}

// New returns the engine of a decoded configuration.
func New(cfg *resource.RBAC) *Engine { return &Engine{cfg: cfg} }

// Action is the configuration's action.
func (e *Engine) Action() resource.RBACAction { return e.cfg.Action }

// Match returns the name of the first policy (by name) that matches, or "".
func (e *Engine) Match(in *Input) (string, bool) {
	for i := range e.cfg.Policies {
		p := &e.cfg.Policies[i]
		if anyPermission(p.Permissions, in) && anyPrincipal(p.Principals, in) {
			return p.Name, true
		}
	}
	return "", false
}

// Allowed applies the action: ALLOW passes matching requests only, DENY refuses
// matching requests, LOG passes everything (logged reports a match).
func (e *Engine) Allowed(in *Input) (allowed, logged bool, policy string) {
	policy, matched := e.Match(in)
	switch e.cfg.Action {
	case resource.RBACAllow:
		return matched, false, policy
	case resource.RBACDeny:
		return !matched, false, policy
	}
	return true, matched, policy
}

func anyPermission(ps []resource.Permission, in *Input) bool {
	for i := range ps {
		if permission(&ps[i], in) {
			return true
		}
	}
	return false
}

func anyPrincipal(ps []resource.Principal, in *Input) bool {
	for i := range ps {
		if principal(&ps[i], in) {
			return true
		}
	}
	return false
}

func permission(p *resource.Permission, in *Input) bool {
	switch p.Kind {
	case resource.RuleAny:
		return true
	case resource.RuleAnd:
		for i := range p.Rules {
			if !permission(&p.Rules[i], in) {
				return false
			}
		}
		return true
	case resource.RuleOr:
		return anyPermission(p.Rules, in)
	case resource.RuleNot:
		return !permission(p.Not, in)
	case resource.RuleHeader:
		return in.HTTP != nil && route.HeaderMatches(p.Header, in.HTTP)
	case resource.RulePath:
		return in.HTTP != nil && p.String.Match(in.Path)
	case resource.RuleDestinationIP:
		return p.CIDR.Contains(in.Conn.Destination.Addr())
	case resource.RuleDestinationPort:
		return uint32(in.Conn.Destination.Port()) == p.Port
	case resource.RuleSNI:
		return p.String.Match(in.Conn.SNI)
	case resource.RuleMetadata:
		return metadata(p.Metadata, in.Metadata)
	}
	return false
}

func principal(p *resource.Principal, in *Input) bool {
	switch p.Kind {
	case resource.RuleAny:
		return true
	case resource.RuleAnd:
		for i := range p.IDs {
			if !principal(&p.IDs[i], in) {
				return false
			}
		}
		return true
	case resource.RuleOr:
		return anyPrincipal(p.IDs, in)
	case resource.RuleNot:
		return !principal(p.Not, in)
	case resource.RuleAuthenticated:
		// Envoy: only a connection with a verified peer certificate is authenticated;
		// principal_name is matched against its URI SAN.
		return in.Conn.Authenticated && (p.String == nil || p.String.Match(in.Conn.Principal))
	case resource.RuleDirectRemoteIP:
		return p.CIDR.Contains(in.Conn.Source.Addr())
	case resource.RuleRemoteIP:
		return p.CIDR.Contains(in.RemoteIP)
	case resource.RuleHeader:
		return in.HTTP != nil && route.HeaderMatches(p.Header, in.HTTP)
	case resource.RulePath:
		return in.HTTP != nil && p.String.Match(in.Path)
	case resource.RuleMetadata:
		return metadata(p.Metadata, in.Metadata)
	}
	return false
}

func metadata(m *resource.MetadataMatcher, md filter.Metadata) bool {
	var v any
	var found bool
	if fields, ok := md[m.Filter]; ok {
		v, found = fields[m.Path[0]]
		for _, k := range m.Path[1:] {
			if !found {
				break
			}
			obj, ok := v.(map[string]any)
			if !ok {
				found = false
				break
			}
			v, found = obj[k]
		}
	}
	matched := found && value(&m.Value, v)
	return matched != m.Invert
}

func value(m *resource.ValueMatcher, v any) bool {
	switch m.Kind {
	case resource.ValueString:
		s, ok := v.(string)
		return ok && m.String.Match(s)
	case resource.ValuePresent:
		return v != nil
	case resource.ValueBool:
		b, ok := v.(bool)
		return ok && b == m.Bool
	case resource.ValueNull:
		return v == nil
	case resource.ValueListOneOf:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range list {
			if value(m.OneOf, e) {
				return true
			}
		}
		return false
	case resource.ValueOr:
		for i := range m.Or {
			if value(&m.Or[i], v) {
				return true
			}
		}
	}
	return false
}

// NormalizePath returns the path of a request target without its query, with "." and
// ".." segments removed (RFC 3986 5.2.4), as Istio's default BASE normalization does
// before policies see it. Percent-encoding is kept.
func NormalizePath(r *http.Request) string {
	p := r.URL.EscapedPath()
	if r.URL.Opaque != "" {
		p = r.URL.Opaque
	}
	if !strings.Contains(p, ".") {
		return p
	}
	return removeDotSegments(p)
}

func removeDotSegments(in string) string {
	var out []string
	segs := strings.Split(in, "/")
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	res := strings.Join(out, "/")
	if !strings.HasPrefix(res, "/") {
		res = "/" + res
	}
	return res
}

// HTTPFilter is the compiled envoy.filters.http.rbac.
type HTTPFilter struct {
	engine   *Engine
	listener string
	log      *slog.Logger
	metrics  *stats.RBAC
}

// NewHTTPFilter compiles an HTTP RBAC filter of a listener.
func NewHTTPFilter(cfg *resource.RBAC, listener string, log *slog.Logger, metrics *stats.RBAC) *HTTPFilter {
	return &HTTPFilter{engine: New(cfg), listener: listener, log: log, metrics: metrics}
}

// Decision is what one RBAC filter decides for a request or connection: what
// `skein explain` shows and what the request path acts on.
type Decision struct {
	Filter string `json:"filter"` // envoy.filters.http.rbac or envoy.filters.network.rbac
	Action string `json:"action"` // ALLOW, DENY, LOG
	// Result is allowed, denied, logged (LOG matched) or not_logged.
	Result string `json:"result"`
	// Policy is the first matching policy by name, e.g.
	// ns[default]-policy[deny-admin]-rule[0] (Istio's naming: namespace, policy, rule).
	Policy string `json:"policy,omitempty"`
	// Policies are every policy of the filter, in evaluation order.
	Policies []string `json:"policies,omitempty"`
}

// Denied reports whether the filter refuses the request or connection.
func (d Decision) Denied() bool { return d.Result == "denied" }

func (e *Engine) decide(in *Input, name string) Decision {
	allowed, logged, policy := e.Allowed(in)
	d := Decision{Filter: name, Action: e.Action().String(), Policy: policy}
	switch {
	case e.Action() == resource.RBACLog && logged:
		d.Result = "logged"
	case e.Action() == resource.RBACLog:
		d.Result = "not_logged"
	case allowed:
		d.Result = "allowed"
	default:
		d.Result = "denied"
	}
	return d
}

func (e *Engine) policyNames() []string {
	out := make([]string, len(e.cfg.Policies))
	for i := range e.cfg.Policies {
		out[i] = e.cfg.Policies[i].Name
	}
	return out
}

// httpInput is returned by value so that it stays on the request goroutine's stack.
func httpInput(r *filter.Request) Input {
	return Input{Conn: &r.Conn, HTTP: r.HTTP, Path: NormalizePath(r.HTTP), RemoteIP: r.RemoteIP(), Metadata: r.Metadata}
}

// Explain is the filter's decision for a request, without acting on it (no metrics,
// no log): the same evaluation DecodeHTTP runs.
func (f *HTTPFilter) Explain(r *filter.Request) Decision {
	in := httpInput(r)
	d := f.engine.decide(&in, HTTPFilterName)
	d.Policies = f.engine.policyNames()
	return d
}

// Explain is the filter's decision for a connection, without acting on it.
func (f *NetworkFilter) Explain(c *filter.Conn) Decision {
	d := f.engine.decide(&Input{Conn: c, RemoteIP: c.Source.Addr()}, NetworkFilterName)
	d.Policies = f.engine.policyNames()
	return d
}

// DecodeHTTP answers 403 "RBAC: access denied" to a denied request.
func (f *HTTPFilter) DecodeHTTP(r *filter.Request) *filter.LocalReply {
	in := httpInput(r)
	allowed, logged, policy := f.engine.Allowed(&in)
	action := f.engine.Action().String()
	switch {
	case f.engine.Action() == resource.RBACLog:
		if logged {
			// Envoy sets access_log_hint; skein also logs the audit record itself.
			r.Metadata.Set(HTTPFilterName, AccessLogHint, true)
			r.Metadata.Set(HTTPFilterName, AuditPolicyKey, policy)
			f.metrics.Decision(f.listener, action, "logged", policy)
			f.log.Info("rbac audit", "listener", f.listener, "policy", policy, "method", r.HTTP.Method,
				"host", r.HTTP.Host, "path", in.Path, "source", r.Conn.Source.String(), "principal", r.Conn.Principal)
		} else {
			f.metrics.Decision(f.listener, action, "not_logged", "")
		}
		return nil
	case allowed:
		f.metrics.Decision(f.listener, action, "allowed", policy)
		return nil
	}
	f.metrics.Decision(f.listener, action, "denied", policy)
	if f.log.Enabled(r.HTTP.Context(), slog.LevelDebug) { // its arguments allocate even when off
		f.log.Debug("rbac denied", "listener", f.listener, "action", action, "policy", policy, "method", r.HTTP.Method, "path", in.Path, "source", r.Conn.Source.String())
	}
	return &filter.LocalReply{Status: http.StatusForbidden, Body: DeniedBody, GRPCStatus: 7, Details: deniedDetails(policy)}
}

// NetworkFilter is the compiled envoy.filters.network.rbac.
type NetworkFilter struct {
	engine   *Engine
	listener string
	log      *slog.Logger
	metrics  *stats.RBAC
}

// NewNetworkFilter compiles a network RBAC filter of a listener.
func NewNetworkFilter(cfg *resource.RBAC, listener string, log *slog.Logger, metrics *stats.RBAC) *NetworkFilter {
	return &NetworkFilter{engine: New(cfg), listener: listener, log: log, metrics: metrics}
}

// OnConnection decides when the connection is accepted: every L4 attribute is known
// then (Envoy's default ONE_TIME_ON_FIRST_BYTE waits for the first byte; the decision
// is the same).
func (f *NetworkFilter) OnConnection(c *filter.Conn) bool {
	in := &Input{Conn: c, RemoteIP: c.Source.Addr()}
	allowed, logged, policy := f.engine.Allowed(in)
	action := f.engine.Action().String()
	switch {
	case f.engine.Action() == resource.RBACLog:
		if logged {
			if c.Metadata == nil {
				c.Metadata = filter.Metadata{}
			}
			c.Metadata.Set(NetworkFilterName, AccessLogHint, true)
			c.Metadata.Set(NetworkFilterName, AuditPolicyKey, policy)
			f.metrics.Decision(f.listener, action, "logged", policy)
			f.log.Info("rbac audit", "listener", f.listener, "policy", policy, "source", c.Source.String(), "principal", c.Principal)
		} else {
			f.metrics.Decision(f.listener, action, "not_logged", "")
		}
		return true
	case allowed:
		f.metrics.Decision(f.listener, action, "allowed", policy)
		return true
	}
	f.metrics.Decision(f.listener, action, "denied", policy)
	if f.log.Enabled(context.Background(), slog.LevelDebug) {
		f.log.Debug("rbac denied connection", "listener", f.listener, "action", action, "policy", policy, "source", c.Source.String())
	}
	return false
}

// DeniedDetails is Envoy's termination details of a connection this filter refused.
func (f *NetworkFilter) DeniedDetails(c *filter.Conn) string {
	return deniedDetails(f.Explain(c).Policy)
}
