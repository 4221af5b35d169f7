package resource

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// RBACAction is what an RBAC filter does when a policy matches (Envoy's RBAC.Action).
type RBACAction int

const (
	RBACAllow RBACAction = iota // only requests matching a policy pass
	RBACDeny                    // requests matching a policy are denied
	RBACLog                     // nothing is denied; a match is recorded (Istio's AUDIT)
)

func (a RBACAction) String() string {
	switch a {
	case RBACDeny:
		return "DENY"
	case RBACLog:
		return "LOG"
	}
	return "ALLOW"
}

// RBAC is a decoded envoy.config.rbac.v3.RBAC: an action and named policies (sorted by
// name), as the HTTP and the network RBAC filters carry it.
type RBAC struct {
	Action     RBACAction
	Policies   []RBACPolicy
	StatPrefix string // network filter only
}

// RBACPolicy matches when any permission and any principal match.
type RBACPolicy struct {
	Name        string
	Permissions []Permission
	Principals  []Principal
}

// RuleKind says which one of a Permission's or Principal's fields is set.
type RuleKind int

const (
	RuleAny RuleKind = iota
	RuleAnd
	RuleOr
	RuleNot
	RuleHeader
	RulePath
	RuleDestinationIP
	RuleDestinationPort
	RuleSNI
	RuleMetadata
	RuleAuthenticated
	RuleDirectRemoteIP
	RuleRemoteIP
)

// Permission is an Envoy RBAC permission (what the request does).
type Permission struct {
	Kind     RuleKind
	Rules    []Permission // RuleAnd, RuleOr
	Not      *Permission  // RuleNot
	Header   *HeaderMatcher
	String   *StringMatcher // RulePath (the path without query), RuleSNI
	CIDR     netip.Prefix   // RuleDestinationIP
	Port     uint32         // RuleDestinationPort
	Metadata *MetadataMatcher
}

// Principal is an Envoy RBAC principal (who sends the request).
type Principal struct {
	Kind   RuleKind
	IDs    []Principal // RuleAnd, RuleOr
	Not    *Principal  // RuleNot
	Header *HeaderMatcher
	// String is the principal_name matcher of RuleAuthenticated (nil: any peer with a
	// verified certificate), or the path matcher of RulePath.
	String   *StringMatcher
	CIDR     netip.Prefix // RuleDirectRemoteIP, RuleRemoteIP
	Metadata *MetadataMatcher
}

// MetadataMatcher matches a value in a filter's dynamic metadata.
type MetadataMatcher struct {
	Filter string
	Path   []string
	Value  ValueMatcher
	Invert bool
}

// ValueKind says which field of a ValueMatcher is set.
type ValueKind int

const (
	ValueString ValueKind = iota
	ValuePresent
	ValueBool
	ValueListOneOf
	ValueOr
	ValueNull
)

// ValueMatcher is envoy.type.matcher.v3.ValueMatcher (the subset in docs/XDS.md).
type ValueMatcher struct {
	Kind   ValueKind
	String *StringMatcher
	Bool   bool
	OneOf  *ValueMatcher  // ValueListOneOf
	Or     []ValueMatcher // ValueOr
}

// maxRuleDepth bounds nested and/or/not rules.
const maxRuleDepth = 32

func httpRBAC(d *Decoder, pb *httprbacv3.RBAC) (*RBAC, error) {
	if pb.GetRules() == nil {
		// Envoy: no rules means the filter is disabled (everything passes).
		return nil, nil
	}
	return rbacRules(pb.GetRules())
}

func networkRBAC(pb *netrbacv3.RBAC) (*RBAC, error) {
	if pb.GetStatPrefix() == "" {
		return nil, fmt.Errorf("stat_prefix: %w", errMissing)
	}
	if pb.GetRules() == nil {
		return nil, nil
	}
	r, err := rbacRules(pb.GetRules())
	if err != nil {
		return nil, err
	}
	r.StatPrefix = pb.GetStatPrefix()
	return r, nil
}

func rbacRules(pb *rbacv3.RBAC) (*RBAC, error) {
	r := &RBAC{}
	switch pb.GetAction() {
	case rbacv3.RBAC_ALLOW:
		r.Action = RBACAllow
	case rbacv3.RBAC_DENY:
		r.Action = RBACDeny
	case rbacv3.RBAC_LOG:
		r.Action = RBACLog
	default:
		return nil, fmt.Errorf("rules.action %v unsupported", pb.GetAction())
	}
	names := make([]string, 0, len(pb.GetPolicies()))
	for n := range pb.GetPolicies() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := pb.GetPolicies()[n]
		pol := RBACPolicy{Name: n}
		if len(p.GetPermissions()) == 0 || len(p.GetPrincipals()) == 0 {
			return nil, fmt.Errorf("rules.policies[%q]: permissions and principals are required", n)
		}
		for i, pp := range p.GetPermissions() {
			perm, err := permission(pp, 0)
			if err != nil {
				return nil, fmt.Errorf("rules.policies[%q].permissions[%d]: %w", n, i, err)
			}
			pol.Permissions = append(pol.Permissions, perm)
		}
		for i, pp := range p.GetPrincipals() {
			prin, err := principal(pp, 0)
			if err != nil {
				return nil, fmt.Errorf("rules.policies[%q].principals[%d]: %w", n, i, err)
			}
			pol.Principals = append(pol.Principals, prin)
		}
		r.Policies = append(r.Policies, pol)
	}
	return r, nil
}

var errTooDeep = errors.New("rules nested too deep")

func permission(pb *rbacv3.Permission, depth int) (Permission, error) {
	if depth > maxRuleDepth {
		return Permission{}, errTooDeep
	}
	var p Permission
	var err error
	switch r := pb.GetRule().(type) {
	case *rbacv3.Permission_Any:
		if !r.Any {
			return p, errors.New("any must be true")
		}
		p.Kind = RuleAny
	case *rbacv3.Permission_AndRules, *rbacv3.Permission_OrRules:
		p.Kind = RuleAnd
		set := pb.GetAndRules()
		if _, or := r.(*rbacv3.Permission_OrRules); or {
			p.Kind, set = RuleOr, pb.GetOrRules()
		}
		if len(set.GetRules()) == 0 {
			return p, errors.New("and_rules/or_rules: at least one rule is required")
		}
		for i, sub := range set.GetRules() {
			s, err := permission(sub, depth+1)
			if err != nil {
				return p, fmt.Errorf("rules[%d]: %w", i, err)
			}
			p.Rules = append(p.Rules, s)
		}
	case *rbacv3.Permission_NotRule:
		p.Kind = RuleNot
		n, err := permission(r.NotRule, depth+1)
		if err != nil {
			return p, fmt.Errorf("not_rule: %w", err)
		}
		p.Not = &n
	case *rbacv3.Permission_Header:
		p.Kind = RuleHeader
		h, err := headerMatcher(r.Header)
		if err != nil {
			return p, fmt.Errorf("header: %w", err)
		}
		p.Header = &h
	case *rbacv3.Permission_UrlPath:
		p.Kind = RulePath
		if p.String, err = stringMatcherPtr(r.UrlPath.GetPath(), "url_path.path"); err != nil {
			return p, err
		}
	case *rbacv3.Permission_DestinationIp:
		p.Kind = RuleDestinationIP
		if p.CIDR, err = cidr(r.DestinationIp); err != nil {
			return p, fmt.Errorf("destination_ip: %w", err)
		}
	case *rbacv3.Permission_DestinationPort:
		p.Kind, p.Port = RuleDestinationPort, r.DestinationPort
		if p.Port > 65535 {
			return p, fmt.Errorf("destination_port %d out of range", p.Port)
		}
	case *rbacv3.Permission_RequestedServerName:
		p.Kind = RuleSNI
		if p.String, err = stringMatcherPtr(r.RequestedServerName, "requested_server_name"); err != nil {
			return p, err
		}
	case *rbacv3.Permission_Metadata:
		p.Kind = RuleMetadata
		if p.Metadata, err = metadataMatcher(r.Metadata); err != nil {
			return p, fmt.Errorf("metadata: %w", err)
		}
	default:
		return p, errors.New("a rule is required")
	}
	return p, nil
}

func principal(pb *rbacv3.Principal, depth int) (Principal, error) {
	if depth > maxRuleDepth {
		return Principal{}, errTooDeep
	}
	var p Principal
	var err error
	switch r := pb.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		if !r.Any {
			return p, errors.New("any must be true")
		}
		p.Kind = RuleAny
	case *rbacv3.Principal_AndIds, *rbacv3.Principal_OrIds:
		p.Kind = RuleAnd
		set := pb.GetAndIds()
		if _, or := r.(*rbacv3.Principal_OrIds); or {
			p.Kind, set = RuleOr, pb.GetOrIds()
		}
		if len(set.GetIds()) == 0 {
			return p, errors.New("and_ids/or_ids: at least one id is required")
		}
		for i, sub := range set.GetIds() {
			s, err := principal(sub, depth+1)
			if err != nil {
				return p, fmt.Errorf("ids[%d]: %w", i, err)
			}
			p.IDs = append(p.IDs, s)
		}
	case *rbacv3.Principal_NotId:
		p.Kind = RuleNot
		n, err := principal(r.NotId, depth+1)
		if err != nil {
			return p, fmt.Errorf("not_id: %w", err)
		}
		p.Not = &n
	case *rbacv3.Principal_Authenticated_:
		p.Kind = RuleAuthenticated
		if r.Authenticated.GetPrincipalName() != nil {
			if p.String, err = stringMatcherPtr(r.Authenticated.GetPrincipalName(), "authenticated.principal_name"); err != nil {
				return p, err
			}
		}
	case *rbacv3.Principal_DirectRemoteIp:
		p.Kind = RuleDirectRemoteIP
		if p.CIDR, err = cidr(r.DirectRemoteIp); err != nil {
			return p, fmt.Errorf("direct_remote_ip: %w", err)
		}
	case *rbacv3.Principal_RemoteIp:
		p.Kind = RuleRemoteIP
		if p.CIDR, err = cidr(r.RemoteIp); err != nil {
			return p, fmt.Errorf("remote_ip: %w", err)
		}
	case *rbacv3.Principal_Header:
		p.Kind = RuleHeader
		h, err := headerMatcher(r.Header)
		if err != nil {
			return p, fmt.Errorf("header: %w", err)
		}
		p.Header = &h
	case *rbacv3.Principal_UrlPath:
		p.Kind = RulePath
		if p.String, err = stringMatcherPtr(r.UrlPath.GetPath(), "url_path.path"); err != nil {
			return p, err
		}
	case *rbacv3.Principal_Metadata:
		p.Kind = RuleMetadata
		if p.Metadata, err = metadataMatcher(r.Metadata); err != nil {
			return p, fmt.Errorf("metadata: %w", err)
		}
	default:
		return p, errors.New("an identifier is required")
	}
	return p, nil
}

// stringMatcherPtr decodes a string matcher (tls.go) into a pointer.
func stringMatcherPtr(pb *matcherv3.StringMatcher, field string) (*StringMatcher, error) {
	if pb == nil {
		return nil, fmt.Errorf("%s: %w", field, errMissing)
	}
	m, err := stringMatcher(pb, field)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

func metadataMatcher(pb *matcherv3.MetadataMatcher) (*MetadataMatcher, error) {
	m := &MetadataMatcher{Filter: pb.GetFilter(), Invert: pb.GetInvert()}
	if m.Filter == "" {
		return nil, fmt.Errorf("filter: %w", errMissing)
	}
	if len(pb.GetPath()) == 0 {
		return nil, fmt.Errorf("path: %w", errMissing)
	}
	for i, s := range pb.GetPath() {
		if s.GetKey() == "" {
			return nil, fmt.Errorf("path[%d].key: %w", i, errMissing)
		}
		m.Path = append(m.Path, s.GetKey())
	}
	v, err := valueMatcher(pb.GetValue(), 0)
	if err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	m.Value = v
	return m, nil
}

func valueMatcher(pb *matcherv3.ValueMatcher, depth int) (ValueMatcher, error) {
	var v ValueMatcher
	if depth > maxRuleDepth {
		return v, errTooDeep
	}
	var err error
	switch p := pb.GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_StringMatch:
		v.Kind = ValueString
		v.String, err = stringMatcherPtr(p.StringMatch, "string_match")
	case *matcherv3.ValueMatcher_PresentMatch:
		v.Kind = ValuePresent
		if !p.PresentMatch {
			err = errors.New("present_match must be true")
		}
	case *matcherv3.ValueMatcher_BoolMatch:
		v.Kind, v.Bool = ValueBool, p.BoolMatch
	case *matcherv3.ValueMatcher_NullMatch_:
		v.Kind = ValueNull
	case *matcherv3.ValueMatcher_ListMatch:
		v.Kind = ValueListOneOf
		var one ValueMatcher
		one, err = valueMatcher(p.ListMatch.GetOneOf(), depth+1)
		v.OneOf = &one
	case *matcherv3.ValueMatcher_OrMatch:
		v.Kind = ValueOr
		if len(p.OrMatch.GetValueMatchers()) < 2 {
			return v, errors.New("or_match needs at least 2 value matchers")
		}
		for _, sub := range p.OrMatch.GetValueMatchers() {
			s, err := valueMatcher(sub, depth+1)
			if err != nil {
				return v, err
			}
			v.Or = append(v.Or, s)
		}
	default:
		return v, errors.New("a match pattern is required")
	}
	return v, err
}

func cidr(pb *corev3.CidrRange) (netip.Prefix, error) {
	a, err := netip.ParseAddr(pb.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address_prefix %q: %w", pb.GetAddressPrefix(), err)
	}
	// Envoy: an unset prefix_len is 0.
	bits := int(pb.GetPrefixLen().GetValue())
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("prefix_len %d: %w", bits, err)
	}
	return p, nil
}
