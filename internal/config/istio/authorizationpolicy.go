package istio

import (
	"net/netip"
	"strconv"
	"strings"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// AuthorizationPolicy translates a checked security.istio.io AuthorizationPolicy spec
// of the object nn into the model, checking what Istio's validation checks (and
// rejecting what skein does not implement: CUSTOM, path templates, experimental keys).
func AuthorizationPolicy(nn model.NamespacedName, spec *security.AuthorizationPolicy) (*model.AuthorizationPolicy, []strict.Issue) {
	var is issues
	out := &model.AuthorizationPolicy{NamespacedName: nn, Selector: selector(spec.GetSelector(), "spec.selector", &is)}
	switch spec.GetAction() {
	case security.AuthorizationPolicy_ALLOW:
		out.Action = model.AuthzAllow
	case security.AuthorizationPolicy_DENY:
		out.Action = model.AuthzDeny
	case security.AuthorizationPolicy_AUDIT:
		out.Action = model.AuthzAudit
	case security.AuthorizationPolicy_CUSTOM:
		is.add("spec.action", "action CUSTOM (external authorization providers) is not supported yet by skein: use ALLOW, DENY or AUDIT")
	default:
		is.add("spec.action", "unknown action %v", spec.GetAction())
	}
	if spec.GetProvider() != nil && spec.GetAction() != security.AuthorizationPolicy_CUSTOM {
		is.add("spec.provider", "provider is only allowed with action CUSTOM")
	}
	for i, r := range spec.GetRules() {
		path := strict.Index("spec.rules", i)
		if r == nil {
			is.add(path, "rule must not be null")
			continue
		}
		out.Rules = append(out.Rules, authzRule(nn.Namespace, r, path, &is))
	}
	return out, is
}

func selector(s *typev1beta1.WorkloadSelector, path string, is *issues) map[string]string {
	if s == nil {
		return nil
	}
	for _, k := range model.SortedKeys(s.GetMatchLabels()) {
		p := strict.Field(path, "matchLabels."+k)
		if k == "" {
			is.add(p, "label key must not be empty")
			continue
		}
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			is.add(p, "invalid label key %q: %s", k, msgs[0])
		}
		if msgs := validation.IsValidLabelValue(s.GetMatchLabels()[k]); len(msgs) > 0 {
			is.add(p, "invalid label value %q: %s", s.GetMatchLabels()[k], msgs[0])
		}
	}
	if len(s.GetMatchLabels()) == 0 {
		return nil
	}
	out := make(map[string]string, len(s.GetMatchLabels()))
	for k, v := range s.GetMatchLabels() {
		out[k] = v
	}
	return out
}

func authzRule(ns string, r *security.Rule, path string, is *issues) model.AuthzRule {
	var out model.AuthzRule
	for i, f := range r.GetFrom() {
		p := strict.Field(strict.Index(strict.Field(path, "from"), i), "source")
		s := f.GetSource()
		if s == nil {
			is.add(p, "source is required")
			continue
		}
		src := model.AuthzSource{
			Principals: s.GetPrincipals(), NotPrincipals: s.GetNotPrincipals(),
			RequestPrincipals: s.GetRequestPrincipals(), NotRequestPrincipals: s.GetNotRequestPrincipals(),
			Namespaces: s.GetNamespaces(), NotNamespaces: s.GetNotNamespaces(),
			ServiceAccounts: s.GetServiceAccounts(), NotServiceAccounts: s.GetNotServiceAccounts(),
			IPBlocks: s.GetIpBlocks(), NotIPBlocks: s.GetNotIpBlocks(),
			RemoteIPBlocks: s.GetRemoteIpBlocks(), NotRemoteIPBlocks: s.GetNotRemoteIpBlocks(),
		}
		fields := map[string][]string{
			"principals": src.Principals, "notPrincipals": src.NotPrincipals,
			"requestPrincipals": src.RequestPrincipals, "notRequestPrincipals": src.NotRequestPrincipals,
			"namespaces": src.Namespaces, "notNamespaces": src.NotNamespaces,
			"serviceAccounts": src.ServiceAccounts, "notServiceAccounts": src.NotServiceAccounts,
			"ipBlocks": src.IPBlocks, "notIpBlocks": src.NotIPBlocks,
			"remoteIpBlocks": src.RemoteIPBlocks, "notRemoteIpBlocks": src.NotRemoteIPBlocks,
		}
		if !anySet(fields) {
			is.add(p, "source must set at least one field")
		}
		for _, name := range model.SortedKeys(fields) {
			for j, v := range fields[name] {
				vp := strict.Index(strict.Field(p, name), j)
				switch {
				case v == "":
					is.add(vp, "empty value")
				case strings.Contains(name, "pBlocks") || strings.Contains(name, "IpBlocks"):
					checkCIDR(v, vp, is)
				case strings.Contains(name, "erviceAccounts"):
					checkServiceAccount(v, vp, is)
				}
			}
		}
		if (len(src.ServiceAccounts) > 0 || len(src.NotServiceAccounts) > 0) &&
			(len(src.Principals) > 0 || len(src.NotPrincipals) > 0 || len(src.Namespaces) > 0 || len(src.NotNamespaces) > 0) {
			is.add(p, "serviceAccounts cannot be set with principals or namespaces")
		}
		out.From = append(out.From, src)
	}
	for i, t := range r.GetTo() {
		p := strict.Field(strict.Index(strict.Field(path, "to"), i), "operation")
		o := t.GetOperation()
		if o == nil {
			is.add(p, "operation is required")
			continue
		}
		op := model.AuthzOperation{
			Hosts: o.GetHosts(), NotHosts: o.GetNotHosts(),
			Ports: o.GetPorts(), NotPorts: o.GetNotPorts(),
			Methods: o.GetMethods(), NotMethods: o.GetNotMethods(),
			Paths: o.GetPaths(), NotPaths: o.GetNotPaths(),
		}
		fields := map[string][]string{
			"hosts": op.Hosts, "notHosts": op.NotHosts, "ports": op.Ports, "notPorts": op.NotPorts,
			"methods": op.Methods, "notMethods": op.NotMethods, "paths": op.Paths, "notPaths": op.NotPaths,
		}
		if !anySet(fields) {
			is.add(p, "operation must set at least one field")
		}
		for _, name := range model.SortedKeys(fields) {
			for j, v := range fields[name] {
				vp := strict.Index(strict.Field(p, name), j)
				switch {
				case v == "":
					is.add(vp, "empty value")
				case name == "ports" || name == "notPorts":
					checkPort(v, vp, is)
				case (name == "paths" || name == "notPaths") && (strings.Contains(v, "{*}") || strings.Contains(v, "{**}")):
					is.add(vp, "path templates ({*}, {**}) are not supported yet by skein")
				}
			}
		}
		out.To = append(out.To, op)
	}
	for i, c := range r.GetWhen() {
		p := strict.Index(strict.Field(path, "when"), i)
		cond := model.AuthzCondition{Key: c.GetKey(), Values: c.GetValues(), NotValues: c.GetNotValues()}
		checkCondition(ns, cond, p, is)
		out.When = append(out.When, cond)
	}
	return out
}

func anySet(fields map[string][]string) bool {
	for _, v := range fields {
		if len(v) > 0 {
			return true
		}
	}
	return false
}

func checkCIDR(v, path string, is *issues) {
	if _, err := netip.ParsePrefix(v); err == nil {
		return
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return
	}
	is.add(path, "%q is not an IP address or CIDR range", v)
}

func checkPort(v, path string, is *issues) {
	if n, err := strconv.ParseUint(v, 10, 32); err != nil || n > 65535 {
		is.add(path, "%q is not a port number (0-65535)", v)
	}
}

func checkServiceAccount(v, path string, is *issues) {
	if strings.Contains(v, "*") {
		is.add(path, "wildcards are not allowed in service accounts")
	}
	if len(v) > 320 {
		is.add(path, "service account is longer than 320 characters")
	}
	if strings.Count(v, "/") > 1 {
		is.add(path, "%q: want <namespace>/<serviceaccount> or <serviceaccount>", v)
	}
}

// Condition keys (https://istio.io/latest/docs/reference/config/security/conditions/).
const (
	attrRequestHeaders   = "request.headers"
	attrSourceIP         = "source.ip"
	attrRemoteIP         = "remote.ip"
	attrSourceNamespace  = "source.namespace"
	attrSourcePrincipal  = "source.principal"
	attrSourceSA         = "source.serviceAccount"
	attrRequestPrincipal = "request.auth.principal"
	attrRequestAudiences = "request.auth.audiences"
	attrRequestPresenter = "request.auth.presenter"
	attrRequestClaims    = "request.auth.claims"
	attrDestinationIP    = "destination.ip"
	attrDestinationPort  = "destination.port"
	attrConnectionSNI    = "connection.sni"
)

func checkCondition(ns string, c model.AuthzCondition, path string, is *issues) {
	keyPath := strict.Field(path, "key")
	k := c.Key
	switch {
	case k == "":
		is.add(keyPath, "key is required")
		return
	case k == attrSourceIP, k == attrRemoteIP, k == attrDestinationIP,
		k == attrSourceNamespace, k == attrSourcePrincipal, k == attrSourceSA,
		k == attrRequestPrincipal, k == attrRequestAudiences, k == attrRequestPresenter,
		k == attrDestinationPort, k == attrConnectionSNI:
	case strings.HasPrefix(k, attrRequestHeaders):
		if _, err := BracketedName(strings.TrimPrefix(k, attrRequestHeaders)); err != nil {
			is.add(keyPath, "%s: want request.headers[<header name>]", err)
		}
	case strings.HasPrefix(k, attrRequestClaims):
		if _, err := ClaimPath(strings.TrimPrefix(k, attrRequestClaims)); err != nil {
			is.add(keyPath, "%s: want request.auth.claims[<claim>] or request.auth.claims[<claim>][<nested claim>]...", err)
		}
	case strings.HasPrefix(k, "experimental."), strings.HasPrefix(k, "request.experimental."):
		is.add(keyPath, "experimental attribute %q is not supported by skein", k)
		return
	default:
		is.add(keyPath, "unknown attribute %q (see https://istio.io/latest/docs/reference/config/security/conditions/)", k)
		return
	}
	if len(c.Values) == 0 && len(c.NotValues) == 0 {
		is.add(path, "at least one of values or notValues must be set")
	}
	for _, f := range []struct {
		name string
		vals []string
	}{{"values", c.Values}, {"notValues", c.NotValues}} {
		for j, v := range f.vals {
			vp := strict.Index(strict.Field(path, f.name), j)
			switch {
			case v == "" && !strings.HasPrefix(k, attrRequestHeaders):
				is.add(vp, "empty value")
			case k == attrSourceIP || k == attrRemoteIP || k == attrDestinationIP:
				checkCIDR(v, vp, is)
			case k == attrDestinationPort:
				checkPort(v, vp, is)
			case k == attrSourceSA:
				checkServiceAccount(v, vp, is)
			}
		}
	}
}

// BracketedName returns NAME of "[NAME]".
func BracketedName(s string) (string, error) {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' {
		return "", errBrackets
	}
	return s[1 : len(s)-1], nil
}

// ClaimPath parses the claim part of request.auth.claims: "[a]" is claim a, "[a][b]"
// the claim b nested in a (as Istio reads nested claims). A dot is part of a name.
func ClaimPath(s string) ([]string, error) {
	var out []string
	rest := s
	for rest != "" {
		if rest[0] != '[' {
			break
		}
		end := strings.IndexByte(rest, ']')
		if end < 0 || strings.IndexByte(rest[1:end], '[') >= 0 {
			break
		}
		out = append(out, rest[1:end])
		rest = rest[end+1:]
	}
	if rest == "" && len(out) > 0 {
		for _, c := range out {
			if c == "" {
				return nil, errBrackets
			}
		}
		return out, nil
	}
	name, err := BracketedName(s)
	if err != nil {
		return nil, err
	}
	return []string{name}, nil
}

type bracketError string

func (e bracketError) Error() string { return string(e) }

const errBrackets = bracketError("the name must be written in brackets")
