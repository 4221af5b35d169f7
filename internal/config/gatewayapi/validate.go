package gatewayapi

import (
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"skein.dev/skein/internal/config/strict"
)

// The checks below are the CRDs' OpenAPI and CEL validation rules (upstream v1.6):
// what the API server would refuse is a load error here too, with the field path.

type issues []strict.Issue

func (is *issues) add(path, format string, args ...any) {
	*is = append(*is, strict.Issue{Path: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	controllerNameRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$`)
	hostnameRe       = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	preciseHostRe    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	durationRe       = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)
	pathValueRe      = regexp.MustCompile(`^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$`)
	headerNameRe     = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$`)
	sectionNameRe    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// ValidateGatewayClass checks a GatewayClass spec.
func ValidateGatewayClass(spec *gwv1.GatewayClassSpec) []strict.Issue {
	var is issues
	if spec.ControllerName == "" {
		is.add("spec.controllerName", "controllerName is required")
	} else if !controllerNameRe.MatchString(string(spec.ControllerName)) {
		is.add("spec.controllerName", "invalid controllerName %q: want a domain-prefixed path such as %s", spec.ControllerName, "skein.dev/gateway-controller")
	}
	if spec.ParametersRef != nil {
		is.add("spec.parametersRef", "parametersRef is not supported by skein")
	}
	return is
}

func validHostname(is *issues, path, h string) {
	if len(h) > 253 || !hostnameRe.MatchString(h) {
		is.add(path, "invalid hostname %q: want a lower-case DNS name, optionally prefixed by \"*.\"", h)
	}
}

func validSectionName(is *issues, path, s string) {
	if s == "" || len(s) > 253 || !sectionNameRe.MatchString(s) {
		is.add(path, "invalid name %q: want a lower-case DNS subdomain", s)
	}
}

// ValidateGateway checks a Gateway spec.
func ValidateGateway(spec *gwv1.GatewaySpec) []strict.Issue {
	var is issues
	if spec.GatewayClassName == "" {
		is.add("spec.gatewayClassName", "gatewayClassName is required")
	}
	if len(spec.Listeners) == 0 {
		is.add("spec.listeners", "at least one listener is required")
	}
	if len(spec.Listeners) > 64 {
		is.add("spec.listeners", "at most 64 listeners, got %d", len(spec.Listeners))
	}
	names := map[gwv1.SectionName]int{}
	type key struct {
		port     gwv1.PortNumber
		protocol gwv1.ProtocolType
		hostname string
	}
	combos := map[key]int{}
	for i, l := range spec.Listeners {
		path := strict.Index("spec.listeners", i)
		validSectionName(&is, strict.Field(path, "name"), string(l.Name))
		if first, dup := names[l.Name]; dup {
			is.add(strict.Field(path, "name"), "listener name %q is also spec.listeners[%d]: names must be unique", l.Name, first)
		} else {
			names[l.Name] = i
		}
		if l.Port < 1 || l.Port > 65535 {
			is.add(strict.Field(path, "port"), "port %d out of range [1, 65535]", l.Port)
		}
		host := ""
		if l.Hostname != nil {
			host = string(*l.Hostname)
			validHostname(&is, strict.Field(path, "hostname"), host)
		}
		k := key{l.Port, l.Protocol, host}
		if first, dup := combos[k]; dup {
			is.add(path, "port, protocol and hostname are the same as spec.listeners[%d]'s: combinations must be unique", first)
		} else {
			combos[k] = i
		}
		switch l.Protocol {
		case gwv1.HTTPProtocolType, gwv1.HTTPSProtocolType, gwv1.TLSProtocolType:
		case gwv1.TCPProtocolType, gwv1.UDPProtocolType:
			if l.Hostname != nil {
				is.add(strict.Field(path, "hostname"), "hostname must not be set for protocol %s", l.Protocol)
			}
		case "":
			is.add(strict.Field(path, "protocol"), "protocol is required")
		default:
			if !strings.Contains(string(l.Protocol), "/") {
				is.add(strict.Field(path, "protocol"), "unknown protocol %q: want HTTP, HTTPS, TLS, TCP or UDP (or a domain-prefixed name)", l.Protocol)
			}
		}
		tlsPath := strict.Field(path, "tls")
		switch {
		case l.Protocol == gwv1.HTTPSProtocolType && l.TLS == nil:
			is.add(tlsPath, "tls is required for protocol HTTPS")
		case l.Protocol == gwv1.TLSProtocolType && l.TLS == nil:
			is.add(tlsPath, "tls is required for protocol TLS")
		case (l.Protocol == gwv1.HTTPProtocolType || l.Protocol == gwv1.TCPProtocolType || l.Protocol == gwv1.UDPProtocolType) && l.TLS != nil:
			is.add(tlsPath, "tls must not be set for protocol %s", l.Protocol)
		}
		if l.TLS != nil {
			mode := gwv1.TLSModeTerminate
			if l.TLS.Mode != nil {
				mode = *l.TLS.Mode
			}
			switch mode {
			case gwv1.TLSModeTerminate:
				if len(l.TLS.CertificateRefs) == 0 {
					is.add(strict.Field(tlsPath, "certificateRefs"), "certificateRefs must be set when mode is Terminate")
				}
			case gwv1.TLSModePassthrough:
				if l.Protocol == gwv1.HTTPSProtocolType {
					is.add(strict.Field(tlsPath, "mode"), "mode Passthrough is not allowed for protocol HTTPS")
				}
			default:
				is.add(strict.Field(tlsPath, "mode"), "unknown mode %q: want Terminate or Passthrough", mode)
			}
			if len(l.TLS.CertificateRefs) > 64 {
				is.add(strict.Field(tlsPath, "certificateRefs"), "at most 64 certificateRefs")
			}
		}
		if ar := l.AllowedRoutes; ar != nil {
			if ns := ar.Namespaces; ns != nil && ns.From != nil {
				switch *ns.From {
				case gwv1.NamespacesFromAll, gwv1.NamespacesFromSame, gwv1.NamespacesFromNone:
				case gwv1.NamespacesFromSelector:
					if ns.Selector == nil {
						is.add(strict.Field(path, "allowedRoutes.namespaces.selector"), "selector is required when from is Selector")
					}
				default:
					is.add(strict.Field(path, "allowedRoutes.namespaces.from"), "unknown value %q: want All, Same, Selector or None", *ns.From)
				}
			}
			for j, k := range ar.Kinds {
				if k.Kind == "" {
					is.add(strict.Index(strict.Field(path, "allowedRoutes.kinds"), j)+".kind", "kind is required")
				}
			}
		}
	}
	for i, a := range spec.Addresses {
		path := strict.Index("spec.addresses", i)
		t := gwv1.IPAddressType
		if a.Type != nil {
			t = *a.Type
		}
		if t == gwv1.IPAddressType && a.Value != "" && !validIP(a.Value) {
			is.add(strict.Field(path, "value"), "invalid IP address %q", a.Value)
		}
	}
	if spec.Infrastructure != nil && spec.Infrastructure.ParametersRef != nil {
		is.add("spec.infrastructure.parametersRef", "parametersRef is not supported by skein")
	}
	if spec.AllowedListeners != nil {
		is.add("spec.allowedListeners", "ListenerSets are not supported by skein yet")
	}
	if spec.TLS != nil {
		is.add("spec.tls", "gateway-level TLS (backend client certificates, frontend validation) is not supported by skein yet")
	}
	return is
}

func validParentRefs(is *issues, refs []gwv1.ParentReference) {
	if len(refs) > 32 {
		is.add("spec.parentRefs", "at most 32 parentRefs, got %d", len(refs))
	}
	for i, p := range refs {
		path := strict.Index("spec.parentRefs", i)
		if p.Name == "" {
			is.add(strict.Field(path, "name"), "name is required")
		}
		if p.SectionName != nil {
			validSectionName(is, strict.Field(path, "sectionName"), string(*p.SectionName))
		}
		if p.Port != nil && (*p.Port < 1 || *p.Port > 65535) {
			is.add(strict.Field(path, "port"), "port %d out of range [1, 65535]", *p.Port)
		}
	}
}

func validHostnames(is *issues, hosts []gwv1.Hostname) {
	for i, h := range hosts {
		validHostname(is, strict.Index("spec.hostnames", i), string(h))
	}
}

func validBackendRef(is *issues, path string, ref gwv1.BackendObjectReference) {
	if ref.Name == "" {
		is.add(strict.Field(path, "name"), "name is required")
	}
	isService := (ref.Group == nil || *ref.Group == "" || *ref.Group == "core") && (ref.Kind == nil || *ref.Kind == "Service")
	if isService && ref.Port == nil {
		is.add(path, "port is required when referring to a Service")
	}
	if ref.Port != nil && (*ref.Port < 1 || *ref.Port > 65535) {
		is.add(strict.Field(path, "port"), "port %d out of range [1, 65535]", *ref.Port)
	}
}

func validWeight(is *issues, path string, w *int32) {
	if w != nil && (*w < 0 || *w > 1000000) {
		is.add(strict.Field(path, "weight"), "weight %d out of range [0, 1000000]", *w)
	}
}

func validHeaderName(is *issues, path, name string) {
	if name == "" || len(name) > 256 || !headerNameRe.MatchString(name) {
		is.add(path, "invalid header name %q", name)
	}
}

func validDuration(is *issues, path string, d *gwv1.Duration) {
	if d != nil && !durationRe.MatchString(string(*d)) {
		is.add(path, "invalid duration %q: want Gateway API form such as 1h, 30s, 500ms or 1m30s", *d)
	}
}

func validHeaderFilter(is *issues, path string, f *gwv1.HTTPHeaderFilter) {
	seen := map[string]string{}
	check := func(field, name string) {
		l := strings.ToLower(name)
		if prev, dup := seen[l]; dup {
			is.add(field, "header %q is also in %s: each header may appear once", name, prev)
		}
		seen[l] = field
	}
	for i, h := range f.Set {
		p := strict.Index(strict.Field(path, "set"), i)
		validHeaderName(is, strict.Field(p, "name"), string(h.Name))
		check(p, string(h.Name))
	}
	for i, h := range f.Add {
		p := strict.Index(strict.Field(path, "add"), i)
		validHeaderName(is, strict.Field(p, "name"), string(h.Name))
		check(p, string(h.Name))
	}
	for i, h := range f.Remove {
		p := strict.Index(strict.Field(path, "remove"), i)
		validHeaderName(is, p, h)
		check(p, h)
	}
}

func validPathModifier(is *issues, path string, m *gwv1.HTTPPathModifier, matches []gwv1.HTTPRouteMatch) {
	switch m.Type {
	case gwv1.FullPathHTTPPathModifier:
		if m.ReplaceFullPath == nil {
			is.add(strict.Field(path, "replaceFullPath"), "replaceFullPath must be set when type is ReplaceFullPath")
		}
		if m.ReplacePrefixMatch != nil {
			is.add(strict.Field(path, "replacePrefixMatch"), "replacePrefixMatch must not be set when type is ReplaceFullPath")
		}
	case gwv1.PrefixMatchHTTPPathModifier:
		if m.ReplacePrefixMatch == nil {
			is.add(strict.Field(path, "replacePrefixMatch"), "replacePrefixMatch must be set when type is ReplacePrefixMatch")
		}
		if m.ReplaceFullPath != nil {
			is.add(strict.Field(path, "replaceFullPath"), "replaceFullPath must not be set when type is ReplacePrefixMatch")
		}
		// CEL rule: ReplacePrefixMatch needs every match to be a PathPrefix match.
		for _, mt := range matches {
			if mt.Path == nil || mt.Path.Type == nil || *mt.Path.Type != gwv1.PathMatchPathPrefix {
				if mt.Path != nil && mt.Path.Type != nil {
					is.add(path, "replacePrefixMatch needs every match of the rule to be a PathPrefix path match")
					return
				}
			}
		}
	default:
		is.add(strict.Field(path, "type"), "unknown type %q: want ReplaceFullPath or ReplacePrefixMatch", m.Type)
	}
}

// validHTTPFilters checks a rule's (or backendRef's) filters: each type's own field,
// and the combinations the CRD forbids.
func validHTTPFilters(is *issues, path string, filters []gwv1.HTTPRouteFilter, matches []gwv1.HTTPRouteMatch) {
	count := map[gwv1.HTTPRouteFilterType]int{}
	for i, f := range filters {
		p := strict.Index(path, i)
		count[f.Type]++
		set := map[gwv1.HTTPRouteFilterType]bool{
			gwv1.HTTPRouteFilterRequestHeaderModifier:  f.RequestHeaderModifier != nil,
			gwv1.HTTPRouteFilterResponseHeaderModifier: f.ResponseHeaderModifier != nil,
			gwv1.HTTPRouteFilterRequestMirror:          f.RequestMirror != nil,
			gwv1.HTTPRouteFilterRequestRedirect:        f.RequestRedirect != nil,
			gwv1.HTTPRouteFilterURLRewrite:             f.URLRewrite != nil,
			gwv1.HTTPRouteFilterCORS:                   f.CORS != nil,
			gwv1.HTTPRouteFilterExternalAuth:           f.ExternalAuth != nil,
			gwv1.HTTPRouteFilterExtensionRef:           f.ExtensionRef != nil,
		}
		if _, known := set[f.Type]; !known {
			is.add(strict.Field(p, "type"), "unknown filter type %q", f.Type)
			continue
		}
		for t, ok := range set {
			if ok && t != f.Type {
				is.add(p, "field for filter type %s must not be set when type is %s", t, f.Type)
			}
		}
		if !set[f.Type] {
			is.add(p, "the %s field must be set for type %s", lowerFirst(string(f.Type)), f.Type)
			continue
		}
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestHeaderModifier:
			validHeaderFilter(is, strict.Field(p, "requestHeaderModifier"), f.RequestHeaderModifier)
		case gwv1.HTTPRouteFilterResponseHeaderModifier:
			validHeaderFilter(is, strict.Field(p, "responseHeaderModifier"), f.ResponseHeaderModifier)
		case gwv1.HTTPRouteFilterRequestRedirect:
			r := f.RequestRedirect
			rp := strict.Field(p, "requestRedirect")
			if r.Scheme != nil && *r.Scheme != "http" && *r.Scheme != "https" {
				is.add(strict.Field(rp, "scheme"), "scheme must be http or https, got %q", *r.Scheme)
			}
			if r.Hostname != nil && !preciseHostRe.MatchString(string(*r.Hostname)) {
				is.add(strict.Field(rp, "hostname"), "invalid hostname %q", *r.Hostname)
			}
			if r.StatusCode != nil && *r.StatusCode != 301 && *r.StatusCode != 302 && *r.StatusCode != 303 && *r.StatusCode != 307 && *r.StatusCode != 308 {
				is.add(strict.Field(rp, "statusCode"), "statusCode must be 301, 302, 303, 307 or 308, got %d", *r.StatusCode)
			}
			if r.Port != nil && (*r.Port < 1 || *r.Port > 65535) {
				is.add(strict.Field(rp, "port"), "port %d out of range [1, 65535]", *r.Port)
			}
			if r.Path != nil {
				validPathModifier(is, strict.Field(rp, "path"), r.Path, matches)
			}
		case gwv1.HTTPRouteFilterURLRewrite:
			r := f.URLRewrite
			rp := strict.Field(p, "urlRewrite")
			if r.Hostname != nil && !preciseHostRe.MatchString(string(*r.Hostname)) {
				is.add(strict.Field(rp, "hostname"), "invalid hostname %q", *r.Hostname)
			}
			if r.Path != nil {
				validPathModifier(is, strict.Field(rp, "path"), r.Path, matches)
			}
		case gwv1.HTTPRouteFilterRequestMirror:
			m := f.RequestMirror
			mp := strict.Field(p, "requestMirror")
			validBackendRef(is, strict.Field(mp, "backendRef"), m.BackendRef)
			if m.Percent != nil && m.Fraction != nil {
				is.add(mp, "only one of percent or fraction may be set")
			}
			if m.Percent != nil && (*m.Percent < 0 || *m.Percent > 100) {
				is.add(strict.Field(mp, "percent"), "percent %d out of range [0, 100]", *m.Percent)
			}
			if fr := m.Fraction; fr != nil {
				den := int32(100)
				if fr.Denominator != nil {
					den = *fr.Denominator
				}
				if fr.Numerator < 0 || den < 1 || fr.Numerator > den {
					is.add(strict.Field(mp, "fraction"), "fraction %d/%d: want 0 <= numerator <= denominator, denominator >= 1", fr.Numerator, den)
				}
			}
		}
	}
	for _, t := range []gwv1.HTTPRouteFilterType{gwv1.HTTPRouteFilterRequestHeaderModifier, gwv1.HTTPRouteFilterResponseHeaderModifier, gwv1.HTTPRouteFilterRequestRedirect, gwv1.HTTPRouteFilterURLRewrite, gwv1.HTTPRouteFilterCORS} {
		if count[t] > 1 {
			is.add(path, "filter %s may appear at most once", t)
		}
	}
	if count[gwv1.HTTPRouteFilterRequestRedirect] > 0 && count[gwv1.HTTPRouteFilterURLRewrite] > 0 {
		is.add(path, "RequestRedirect and URLRewrite cannot be used together")
	}
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// ValidateHTTPRoute checks an HTTPRoute spec.
func ValidateHTTPRoute(spec *gwv1.HTTPRouteSpec) []strict.Issue {
	var is issues
	validParentRefs(&is, spec.ParentRefs)
	validHostnames(&is, spec.Hostnames)
	if len(spec.Rules) > 16 {
		is.add("spec.rules", "at most 16 rules, got %d", len(spec.Rules))
	}
	ruleNames := map[gwv1.SectionName]int{}
	for i, r := range spec.Rules {
		path := strict.Index("spec.rules", i)
		if r.Name != nil {
			validSectionName(&is, strict.Field(path, "name"), string(*r.Name))
			if first, dup := ruleNames[*r.Name]; dup {
				is.add(strict.Field(path, "name"), "rule name %q is also spec.rules[%d]", *r.Name, first)
			}
			ruleNames[*r.Name] = i
		}
		if len(r.Matches) > 64 {
			is.add(strict.Field(path, "matches"), "at most 64 matches")
		}
		for j, m := range r.Matches {
			mp := strict.Index(strict.Field(path, "matches"), j)
			if m.Path != nil {
				pp := strict.Field(mp, "path")
				t := gwv1.PathMatchPathPrefix
				if m.Path.Type != nil {
					t = *m.Path.Type
				}
				v := "/"
				if m.Path.Value != nil {
					v = *m.Path.Value
				}
				switch t {
				case gwv1.PathMatchExact, gwv1.PathMatchPathPrefix:
					switch {
					case !strings.HasPrefix(v, "/"):
						is.add(strict.Field(pp, "value"), "value must be an absolute path and start with '/' when type is %s", t)
					case strings.Contains(v, "//"), strings.Contains(v, "/./"), strings.Contains(v, "/../"),
						strings.Contains(strings.ToLower(v), "%2f"), strings.Contains(v, "#"),
						strings.HasSuffix(v, "/.."), strings.HasSuffix(v, "/."):
						is.add(strict.Field(pp, "value"), "value %q must not contain '//', '/./', '/../', '%%2f' or '#', nor end with '/.' or '/..'", v)
					case !pathValueRe.MatchString(v):
						is.add(strict.Field(pp, "value"), "value %q has characters not allowed in a path", v)
					}
				case gwv1.PathMatchRegularExpression:
					if _, err := regexp.Compile(v); err != nil {
						is.add(strict.Field(pp, "value"), "invalid regular expression: %v", err)
					}
				default:
					is.add(strict.Field(pp, "type"), "unknown type %q: want Exact, PathPrefix or RegularExpression", t)
				}
			}
			names := map[string]bool{}
			for k, h := range m.Headers {
				hp := strict.Index(strict.Field(mp, "headers"), k)
				validHeaderName(&is, strict.Field(hp, "name"), string(h.Name))
				if names[strings.ToLower(string(h.Name))] {
					is.add(strict.Field(hp, "name"), "header %q is matched twice", h.Name)
				}
				names[strings.ToLower(string(h.Name))] = true
				validMatchType(&is, hp, h.Type == nil || *h.Type == gwv1.HeaderMatchExact, h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression, h.Type, h.Value)
			}
			qnames := map[string]bool{}
			for k, q := range m.QueryParams {
				qp := strict.Index(strict.Field(mp, "queryParams"), k)
				if q.Name == "" {
					is.add(strict.Field(qp, "name"), "name is required")
				}
				if qnames[string(q.Name)] {
					is.add(strict.Field(qp, "name"), "query parameter %q is matched twice", q.Name)
				}
				qnames[string(q.Name)] = true
				validMatchType(&is, qp, q.Type == nil || *q.Type == gwv1.QueryParamMatchExact, q.Type != nil && *q.Type == gwv1.QueryParamMatchRegularExpression, q.Type, q.Value)
			}
			if m.Method != nil {
				switch *m.Method {
				case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
				default:
					is.add(strict.Field(mp, "method"), "unknown method %q", *m.Method)
				}
			}
		}
		validHTTPFilters(&is, strict.Field(path, "filters"), r.Filters, r.Matches)
		for j, b := range r.BackendRefs {
			bp := strict.Index(strict.Field(path, "backendRefs"), j)
			validBackendRef(&is, bp, b.BackendObjectReference)
			validWeight(&is, bp, b.Weight)
			validHTTPFilters(&is, strict.Field(bp, "filters"), b.Filters, r.Matches)
		}
		if t := r.Timeouts; t != nil {
			tp := strict.Field(path, "timeouts")
			validDuration(&is, strict.Field(tp, "request"), t.Request)
			validDuration(&is, strict.Field(tp, "backendRequest"), t.BackendRequest)
			if t.Request != nil && t.BackendRequest != nil && durationRe.MatchString(string(*t.Request)) && durationRe.MatchString(string(*t.BackendRequest)) {
				req, _ := ParseDuration(*t.Request)
				be, _ := ParseDuration(*t.BackendRequest)
				if req != 0 && be > req {
					is.add(strict.Field(tp, "backendRequest"), "backendRequest (%s) must not be longer than request (%s)", *t.BackendRequest, *t.Request)
				}
			}
		}
		if r.SessionPersistence != nil {
			is.add(strict.Field(path, "sessionPersistence"), "sessionPersistence is not supported by skein yet")
		}
	}
	return is
}

func validMatchType[T ~string](is *issues, path string, exact, regex bool, t *T, value string) {
	switch {
	case exact:
		if len(value) > 4096 {
			is.add(strict.Field(path, "value"), "value longer than 4096 characters")
		}
	case regex:
		if _, err := regexp.Compile(value); err != nil {
			is.add(strict.Field(path, "value"), "invalid regular expression: %v", err)
		}
	default:
		is.add(strict.Field(path, "type"), "unknown type %q: want Exact or RegularExpression", *t)
	}
}

// ValidateGRPCRoute checks a GRPCRoute spec.
func ValidateGRPCRoute(spec *gwv1.GRPCRouteSpec) []strict.Issue {
	var is issues
	validParentRefs(&is, spec.ParentRefs)
	validHostnames(&is, spec.Hostnames)
	for i, r := range spec.Rules {
		path := strict.Index("spec.rules", i)
		for j, m := range r.Matches {
			mp := strict.Index(strict.Field(path, "matches"), j)
			if m.Method != nil {
				mm := strict.Field(mp, "method")
				t := gwv1.GRPCMethodMatchExact
				if m.Method.Type != nil {
					t = *m.Method.Type
				}
				if m.Method.Service == nil && m.Method.Method == nil {
					is.add(mm, "one or both of service or method must be specified")
				}
				switch t {
				case gwv1.GRPCMethodMatchExact:
					if m.Method.Service != nil && strings.ContainsAny(*m.Method.Service, "/") {
						is.add(strict.Field(mm, "service"), "service must not contain '/'")
					}
					if m.Method.Method != nil && strings.ContainsAny(*m.Method.Method, "/") {
						is.add(strict.Field(mm, "method"), "method must not contain '/'")
					}
				case gwv1.GRPCMethodMatchRegularExpression:
					for f, v := range map[string]*string{"service": m.Method.Service, "method": m.Method.Method} {
						if v != nil {
							if _, err := regexp.Compile(*v); err != nil {
								is.add(strict.Field(mm, f), "invalid regular expression: %v", err)
							}
						}
					}
				default:
					is.add(strict.Field(mm, "type"), "unknown type %q: want Exact or RegularExpression", t)
				}
			}
			for k, h := range m.Headers {
				hp := strict.Index(strict.Field(mp, "headers"), k)
				validHeaderName(&is, strict.Field(hp, "name"), string(h.Name))
				validMatchType(&is, hp, h.Type == nil || *h.Type == gwv1.GRPCHeaderMatchExact, h.Type != nil && *h.Type == gwv1.GRPCHeaderMatchRegularExpression, h.Type, h.Value)
			}
		}
		for j, f := range r.Filters {
			fp := strict.Index(strict.Field(path, "filters"), j)
			switch f.Type {
			case gwv1.GRPCRouteFilterRequestHeaderModifier, gwv1.GRPCRouteFilterResponseHeaderModifier, gwv1.GRPCRouteFilterRequestMirror, gwv1.GRPCRouteFilterExtensionRef:
			default:
				is.add(strict.Field(fp, "type"), "unknown filter type %q", f.Type)
			}
		}
		for j, b := range r.BackendRefs {
			bp := strict.Index(strict.Field(path, "backendRefs"), j)
			validBackendRef(&is, bp, b.BackendObjectReference)
			validWeight(&is, bp, b.Weight)
		}
	}
	return is
}

// ValidateTLSRoute checks a TLSRoute spec.
func ValidateTLSRoute(spec *gwv1.TLSRouteSpec) []strict.Issue {
	var is issues
	validParentRefs(&is, spec.ParentRefs)
	validHostnames(&is, spec.Hostnames)
	if len(spec.Rules) == 0 {
		is.add("spec.rules", "at least one rule is required")
	}
	for i, r := range spec.Rules {
		path := strict.Index("spec.rules", i)
		if len(r.BackendRefs) == 0 {
			is.add(strict.Field(path, "backendRefs"), "at least one backendRef is required")
		}
		for j, b := range r.BackendRefs {
			bp := strict.Index(strict.Field(path, "backendRefs"), j)
			validBackendRef(&is, bp, b.BackendObjectReference)
			validWeight(&is, bp, b.Weight)
		}
	}
	return is
}

// ValidateTCPRoute checks a TCPRoute spec.
func ValidateTCPRoute(spec *gwv1.TCPRouteSpec) []strict.Issue {
	var is issues
	validParentRefs(&is, spec.ParentRefs)
	if len(spec.Rules) == 0 {
		is.add("spec.rules", "at least one rule is required")
	}
	for i, r := range spec.Rules {
		path := strict.Index("spec.rules", i)
		if len(r.BackendRefs) == 0 {
			is.add(strict.Field(path, "backendRefs"), "at least one backendRef is required")
		}
		for j, b := range r.BackendRefs {
			bp := strict.Index(strict.Field(path, "backendRefs"), j)
			validBackendRef(&is, bp, b.BackendObjectReference)
			validWeight(&is, bp, b.Weight)
		}
	}
	return is
}

// ValidateReferenceGrant checks a ReferenceGrant spec.
func ValidateReferenceGrant(spec *gwv1.ReferenceGrantSpec) []strict.Issue {
	var is issues
	if len(spec.From) == 0 {
		is.add("spec.from", "at least one from entry is required")
	}
	if len(spec.To) == 0 {
		is.add("spec.to", "at least one to entry is required")
	}
	for i, f := range spec.From {
		p := strict.Index("spec.from", i)
		if f.Kind == "" {
			is.add(strict.Field(p, "kind"), "kind is required")
		}
		if f.Namespace == "" {
			is.add(strict.Field(p, "namespace"), "namespace is required")
		}
	}
	for i, t := range spec.To {
		if t.Kind == "" {
			is.add(strict.Field(strict.Index("spec.to", i), "kind"), "kind is required")
		}
	}
	return is
}

// ValidateSecret checks a Secret of type kubernetes.io/tls (other types are accepted
// and ignored by gateways).
func ValidateSecret(typ corev1.SecretType, data map[string][]byte) []strict.Issue {
	var is issues
	if typ == corev1.SecretTypeTLS {
		for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
			if len(data[k]) == 0 {
				is.add(strict.Key("data", k), "a kubernetes.io/tls Secret needs %s", k)
			}
		}
	}
	for k := range data {
		if msgs := validation.IsConfigMapKey(k); len(msgs) > 0 {
			is.add(strict.Key("data", k), "invalid key %q: %s", k, msgs[0])
		}
	}
	return is
}

func validIP(s string) bool {
	return len(validation.IsValidIP(nil, s)) == 0
}
