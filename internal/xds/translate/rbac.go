package translate

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"skein.dev/skein/internal/model"
)

// Filter names, as Istio names them.
const (
	HTTPRBACFilterName    = "envoy.filters.http.rbac"
	NetworkRBACFilterName = "envoy.filters.network.rbac"
	// JWTFilterPayloadKey is where the jwt_authn filter puts a verified token's payload
	// in its dynamic metadata (Istio's EnvoyJwtFilterPayload).
	JWTFilterPayloadKey = "payload"
)

// Istio's attribute names (pilot/pkg/security/authz/model).
const (
	attrRequestHeader    = "request.headers"
	attrSrcIP            = "source.ip"
	attrRemoteIP         = "remote.ip"
	attrSrcNamespace     = "source.namespace"
	attrSrcPrincipal     = "source.principal"
	attrSrcSA            = "source.serviceAccount"
	attrRequestPrincipal = "request.auth.principal"
	attrRequestAudiences = "request.auth.audiences"
	attrRequestPresenter = "request.auth.presenter"
	attrRequestClaims    = "request.auth.claims"
	attrDestIP           = "destination.ip"
	attrDestPort         = "destination.port"
	attrConnSNI          = "connection.sni"
)

// authz holds the policies that apply to the proxy's workload, split by action.
type authz struct {
	audit, deny, allow []*model.AuthorizationPolicy
}

func (b *builder) authzPolicies() authz {
	var a authz
	if b.proxy == nil {
		return a
	}
	for _, p := range b.mesh.AuthorizationPoliciesFor(b.proxy.Workload, b.workloadLabels()) {
		switch p.Action {
		case model.AuthzAudit:
			a.audit = append(a.audit, p)
		case model.AuthzDeny:
			a.deny = append(a.deny, p)
		default:
			a.allow = append(a.allow, p)
		}
	}
	return a
}

// workloadLabels are the labels policies select on: the proxy's own, else its
// workload's.
func (b *builder) workloadLabels() map[string]string {
	if len(b.proxy.Labels) > 0 {
		return b.proxy.Labels
	}
	if w := b.workloads[b.proxy.Workload]; w != nil {
		return w.Labels
	}
	return nil
}

// rbacConfigs returns the RBAC configurations of one inbound port, in Istio's filter
// order: AUDIT (action LOG), DENY, ALLOW. An action without policies has no filter; an
// action with policies always has one, even when none of its rules survived (an ALLOW
// filter without policies denies everything).
func (b *builder) rbacConfigs(containerPort int, forTCP bool) []*rbacv3.RBAC {
	a := b.authzPolicies()
	var out []*rbacv3.RBAC
	for _, set := range []struct {
		policies []*model.AuthorizationPolicy
		action   rbacv3.RBAC_Action
	}{{a.audit, rbacv3.RBAC_LOG}, {a.deny, rbacv3.RBAC_DENY}, {a.allow, rbacv3.RBAC_ALLOW}} {
		if len(set.policies) == 0 {
			continue
		}
		rules := &rbacv3.RBAC{Action: set.action, Policies: map[string]*rbacv3.Policy{}}
		for _, p := range set.policies {
			for i, r := range p.Rules {
				g := ruleGen{forTCP: forTCP, action: set.action, policyNS: p.Namespace, capturePort: b.capturePort(containerPort)}
				if pol, err := g.policy(r); err == nil {
					rules.Policies[fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", p.Namespace, p.Name, i)] = pol
				}
			}
		}
		out = append(out, rules)
	}
	return out
}

// capturePort is the container port destination.port conditions are resolved against
// in CaptureNone mode, where the inbound listener does not bind the container port
// (docs/XDS.md); 0 otherwise.
func (b *builder) capturePort(containerPort int) int {
	if b.proxy.Capture == "" || b.proxy.Capture == model.CaptureNone {
		return containerPort
	}
	return 0
}

// httpRBACFilters wraps rbacConfigs as HCM filters.
func (b *builder) httpRBACFilters(containerPort int) []*hcm.HttpFilter {
	var out []*hcm.HttpFilter
	for _, rules := range b.rbacConfigs(containerPort, false) {
		out = append(out, &hcm.HttpFilter{
			Name:       HTTPRBACFilterName,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: b.toAny(&httprbac.RBAC{Rules: rules})},
		})
	}
	return out
}

// networkRBACFilters wraps rbacConfigs as network filters placed before tcp_proxy.
func (b *builder) networkRBACFilters(containerPort int) []*listener.Filter {
	var out []*listener.Filter
	for _, rules := range b.rbacConfigs(containerPort, true) {
		out = append(out, &listener.Filter{
			Name: NetworkRBACFilterName,
			ConfigType: &listener.Filter_TypedConfig{TypedConfig: b.toAny(&netrbac.RBAC{
				Rules: rules, StatPrefix: "tcp.",
			})},
		})
	}
	return out
}

// ruleGen generates one Envoy policy from one Istio rule, as Istio's authz model does:
// every `from` is a principal and every `to` a permission (ORed); the fields of each
// are ANDed, with `when` conditions added to each. On TCP, HTTP-only attributes are an
// error: an ALLOW rule with one is dropped whole (it allows nothing), while for DENY
// and AUDIT only that attribute is dropped, making the rule broader.
type ruleGen struct {
	forTCP      bool
	action      rbacv3.RBAC_Action
	policyNS    string
	capturePort int
}

type errHTTPOnly string

func (e errHTTPOnly) Error() string { return fmt.Sprintf("%q is HTTP only", string(e)) }

// field is one attribute of a rule with its values and not-values.
type field struct {
	key             string
	values, notVals []string
}

func (g ruleGen) policy(r model.AuthzRule) (*rbacv3.Policy, error) {
	var basePerm, basePrin []field
	for _, c := range r.When {
		f := field{key: c.Key, values: c.Values, notVals: c.NotValues}
		switch c.Key {
		case attrDestIP, attrDestPort, attrConnSNI:
			basePerm = append(basePerm, f)
		default:
			basePrin = append(basePrin, f)
		}
	}
	pol := &rbacv3.Policy{}
	froms := r.From
	if len(froms) == 0 {
		froms = []model.AuthzSource{{}}
	}
	for _, s := range froms {
		fields := nonEmpty(
			field{attrSrcPrincipal, s.Principals, s.NotPrincipals},
			field{attrRequestPrincipal, s.RequestPrincipals, s.NotRequestPrincipals},
			field{attrSrcSA, s.ServiceAccounts, s.NotServiceAccounts},
			field{attrSrcNamespace, s.Namespaces, s.NotNamespaces},
			field{attrRemoteIP, s.RemoteIPBlocks, s.NotRemoteIPBlocks},
			field{attrSrcIP, s.IPBlocks, s.NotIPBlocks},
		)
		var and []*rbacv3.Principal
		for _, f := range append(fields, basePrin...) {
			ps, err := g.principals(f)
			if err != nil {
				return nil, err
			}
			and = append(and, ps...)
		}
		if len(and) == 0 {
			and = []*rbacv3.Principal{principalAny()}
		}
		pol.Principals = append(pol.Principals, &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: and}}})
	}
	tos := r.To
	if len(tos) == 0 {
		tos = []model.AuthzOperation{{}}
	}
	for _, o := range tos {
		fields := nonEmpty(
			field{":authority", o.Hosts, o.NotHosts},
			field{":method", o.Methods, o.NotMethods},
			field{"path-matcher", o.Paths, o.NotPaths},
			field{attrDestPort, o.Ports, o.NotPorts},
		)
		var and []*rbacv3.Permission
		for _, f := range append(fields, basePerm...) {
			ps, err := g.permissions(f)
			if err != nil {
				return nil, err
			}
			and = append(and, ps...)
		}
		if len(and) == 0 {
			and = []*rbacv3.Permission{permissionAny()}
		}
		pol.Permissions = append(pol.Permissions, &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: and}}})
	}
	return pol, nil
}

func nonEmpty(fs ...field) []field {
	var out []field
	for _, f := range fs {
		if len(f.values) > 0 || len(f.notVals) > 0 {
			out = append(out, f)
		}
	}
	return out
}

// checkError keeps an error for ALLOW (the rule is dropped) and ignores it otherwise
// (the attribute is dropped), as Istio does.
func (g ruleGen) checkError(err error) error {
	if g.action == rbacv3.RBAC_ALLOW {
		return err
	}
	return nil
}

// aggregated attributes turn all their values into one matcher (Istio's "extended"
// generators), the others one matcher per value, ORed.
func aggregated(key string) bool {
	return key == attrRequestPrincipal || key == attrRequestAudiences || key == attrRequestPresenter ||
		strings.HasPrefix(key, attrRequestClaims)
}

func (g ruleGen) principals(f field) ([]*rbacv3.Principal, error) {
	var out []*rbacv3.Principal
	for i, vals := range [][]string{f.values, f.notVals} {
		if len(vals) == 0 {
			continue
		}
		var p *rbacv3.Principal
		if aggregated(f.key) {
			var err error
			p, err = g.aggregatedPrincipal(f.key, vals)
			if err := g.checkError(err); err != nil {
				return nil, err
			}
		} else {
			var or []*rbacv3.Principal
			for _, v := range vals {
				one, err := g.principal(f.key, v)
				if err := g.checkError(err); err != nil {
					return nil, err
				}
				if one != nil {
					or = append(or, one)
				}
			}
			if len(or) > 0 {
				p = &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: or}}}
			}
		}
		if p == nil {
			continue
		}
		if i == 1 {
			p = &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: p}}
		}
		out = append(out, p)
	}
	return out, nil
}

func (g ruleGen) permissions(f field) ([]*rbacv3.Permission, error) {
	var out []*rbacv3.Permission
	for i, vals := range [][]string{f.values, f.notVals} {
		var or []*rbacv3.Permission
		for _, v := range vals {
			one, err := g.permission(f.key, v)
			if err := g.checkError(err); err != nil {
				return nil, err
			}
			if one != nil {
				or = append(or, one)
			}
		}
		if len(or) == 0 {
			continue
		}
		p := &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: or}}}
		if i == 1 {
			p = &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: p}}
		}
		out = append(out, p)
	}
	return out, nil
}

func (g ruleGen) principal(key, value string) (*rbacv3.Principal, error) {
	switch {
	case key == attrSrcIP:
		cidr, err := cidrRange(value)
		if err != nil {
			return nil, err
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr}}, nil
	case key == attrRemoteIP:
		cidr, err := cidrRange(value)
		if err != nil {
			return nil, err
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: cidr}}, nil
	case key == attrSrcNamespace:
		v := strings.ReplaceAll(value, "*", ".*")
		return authenticated(stringRegex(fmt.Sprintf(".*/ns/%s/.*", v))), nil
	case key == attrSrcSA:
		ns, sa, ok := strings.Cut(value, "/")
		if !ok {
			ns, sa = g.policyNS, value
		}
		return authenticated(stringRegex(fmt.Sprintf("spiffe://.+/ns/%s/(.+/|)sa/%s(/.+)?", ns, sa))), nil
	case key == attrSrcPrincipal:
		return authenticated(stringMatcherWithPrefix(value, "spiffe://")), nil
	case strings.HasPrefix(key, attrRequestHeader):
		if g.forTCP {
			return nil, errHTTPOnly(key)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(key, attrRequestHeader), "["), "]")
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: headerMatcher(name, value, false)}}, nil
	}
	return nil, fmt.Errorf("unknown attribute %q", key)
}

var matchAny = stringRegex(".+")

func (g ruleGen) aggregatedPrincipal(key string, values []string) (*rbacv3.Principal, error) {
	if g.forTCP {
		return nil, errHTTPOnly(key)
	}
	switch {
	case key == attrRequestPrincipal:
		var or []*rbacv3.Principal
		for _, v := range values {
			iss, sub := requestPrincipalMatchers(v)
			or = append(or, &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
				metadataPrincipal(jwtClaimMatcher([]string{"iss"}, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: iss}}, false)),
				metadataPrincipal(jwtClaimMatcher([]string{"sub"}, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: sub}}, false)),
			}}}})
		}
		if len(or) == 1 {
			return or[0], nil
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: or}}}, nil
	case key == attrRequestAudiences:
		return metadataPrincipal(jwtClaimMatcher([]string{"aud"}, stringOrMatcher(values), true)), nil
	case key == attrRequestPresenter:
		return metadataPrincipal(jwtClaimMatcher([]string{"azp"}, stringOrMatcher(values), true)), nil
	case strings.HasPrefix(key, attrRequestClaims):
		claims := claimPath(strings.TrimPrefix(key, attrRequestClaims))
		return metadataPrincipal(jwtClaimMatcher(claims, stringOrMatcher(values), true)), nil
	}
	return nil, fmt.Errorf("unknown attribute %q", key)
}

// requestPrincipalMatchers splits "iss/sub" at the last "/" (an issuer may be a URL)
// and handles the wildcards as Istio does.
func requestPrincipalMatchers(value string) (iss, sub *matcherv3.StringMatcher) {
	idx := strings.LastIndex(value, "/")
	found := idx >= 0
	is, su := value, ""
	if found {
		is, su = value[:idx], value[idx+1:]
	}
	switch {
	case value == "*":
		return matchAny, matchAny
	case strings.HasPrefix(value, "*"):
		if found {
			if is == "*" {
				return matchAny, stringExact(su)
			}
			return stringSuffix(strings.TrimPrefix(is, "*")), stringExact(su)
		}
		return matchAny, stringSuffix(strings.TrimPrefix(value, "*"))
	case strings.HasSuffix(value, "*"):
		if found {
			if su == "*" {
				return stringExact(is), matchAny
			}
			return stringExact(is), stringPrefix(strings.TrimSuffix(su, "*"))
		}
		return stringPrefix(strings.TrimSuffix(value, "*")), matchAny
	}
	return stringExact(is), stringExact(su)
}

// claimPath parses "[a][b]" into [a b]; anything else is one name in brackets (the
// config adapter has validated the key).
func claimPath(s string) []string {
	var out []string
	rest := s
	for strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 || strings.Contains(rest[1:end], "[") {
			break
		}
		out = append(out, rest[1:end])
		rest = rest[end+1:]
	}
	if rest == "" && len(out) > 0 {
		return out
	}
	return []string{strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")}
}

func (g ruleGen) permission(key, value string) (*rbacv3.Permission, error) {
	switch key {
	case attrDestIP:
		cidr, err := cidrRange(value)
		if err != nil {
			return nil, err
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: cidr}}, nil
	case attrDestPort:
		port, err := strconv.ParseUint(value, 10, 32)
		if err != nil || port > 65535 {
			return nil, fmt.Errorf("invalid port %q", value)
		}
		if g.capturePort != 0 {
			if int(port) == g.capturePort {
				return permissionAny(), nil
			}
			return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: permissionAny()}}, nil
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(port)}}, nil
	case attrConnSNI:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: stringMatcherWithPrefix(value, "")}}, nil
	case ":authority":
		if g.forTCP {
			return nil, errHTTPOnly(key)
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcher(key, value, true)}}, nil
	case ":method":
		if g.forTCP {
			return nil, errHTTPOnly(key)
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcher(key, value, false)}}, nil
	case "path-matcher":
		if g.forTCP {
			return nil, errHTTPOnly(key)
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
			Rule: &matcherv3.PathMatcher_Path{Path: stringMatcherWithPrefix(value, "")},
		}}}, nil
	}
	return nil, fmt.Errorf("unknown attribute %q", key)
}

func permissionAny() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}
func principalAny() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func authenticated(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func metadataPrincipal(m *matcherv3.MetadataMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: m}}
}

// jwtClaimMatcher matches a claim in the jwt_authn filter's payload metadata. With
// orList (Istio's "extended" claim matcher) a list-valued claim matches when one of
// its elements does.
func jwtClaimMatcher(claims []string, value *matcherv3.ValueMatcher, orList bool) *matcherv3.MetadataMatcher {
	path := []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: JWTFilterPayloadKey}}}
	for _, c := range claims {
		path = append(path, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: c}})
	}
	if orList {
		value = &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: []*matcherv3.ValueMatcher{
			value,
			{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: value}}}},
		}}}}
	}
	return &matcherv3.MetadataMatcher{Filter: JWTFilterName, Path: path, Value: value}
}

func stringOrMatcher(values []string) *matcherv3.ValueMatcher {
	if len(values) == 1 {
		return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: stringMatcherWithPrefix(values[0], "")}}
	}
	var ms []*matcherv3.ValueMatcher
	for _, v := range values {
		ms = append(ms, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: stringMatcherWithPrefix(v, "")}})
	}
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: ms}}}
}

// headerMatcher is Istio's HeaderMatcher / HostMatcher: "*" is presence, a leading or
// trailing "*" a suffix or prefix match; hosts compare case-insensitively.
func headerMatcher(name, v string, ignoreCase bool) *routev3.HeaderMatcher {
	h := &routev3.HeaderMatcher{Name: name}
	var sm *matcherv3.StringMatcher
	switch {
	case v == "*":
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		return h
	case strings.HasPrefix(v, "*"):
		sm = stringSuffix(v[1:])
	case strings.HasSuffix(v, "*"):
		sm = stringPrefix(v[:len(v)-1])
	default:
		sm = stringExact(v)
	}
	sm.IgnoreCase = ignoreCase
	h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
	return h
}

// stringMatcherWithPrefix is Istio's StringMatcherWithPrefix: "*" matches any non-empty
// value, "*x" a suffix, "x*" a prefix, else exact; prefix is prepended.
func stringMatcherWithPrefix(v, prefix string) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return stringRegex(".+")
	case strings.HasPrefix(v, "*"):
		if prefix == "" {
			return stringSuffix(strings.TrimPrefix(v, "*"))
		}
		return stringRegex(prefix + ".*" + regexp.QuoteMeta(strings.TrimPrefix(v, "*")))
	case strings.HasSuffix(v, "*"):
		return stringPrefix(prefix + strings.TrimSuffix(v, "*"))
	}
	return stringExact(prefix + v)
}

func stringExact(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}
func stringPrefix(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v}}
}
func stringSuffix(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v}}
}
func stringRegex(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}}
}

func cidrRange(v string) (*corev3.CidrRange, error) {
	if !strings.Contains(v, "/") {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("invalid IP %q", v)
		}
		return &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))}, nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return nil, fmt.Errorf("invalid CIDR %q", v)
	}
	return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, nil
}
