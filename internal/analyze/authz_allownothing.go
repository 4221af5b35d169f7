package analyze

import (
	"strings"

	"skein.dev/skein/internal/model"
)

// Codes of ALLOW policies that allow nothing, or less than they seem to.
const (
	CodeAllowNothing       = "SK0103" // an ALLOW policy without rules
	CodeAllowHTTPOnTCP     = "SK0104" // an ALLOW rule with HTTP-only fields on TCP-only workloads
	CodeAllowNeedsJWTRules = "SK0105" // requestPrincipals / request.auth.* without RequestAuthentication
)

func init() {
	register(Check{Name: "allow-nothing", Codes: []string{CodeAllowNothing, CodeAllowHTTPOnTCP, CodeAllowNeedsJWTRules}, Run: checkAllowNothing})
}

func checkAllowNothing(m *model.Mesh) []Finding {
	var out []Finding
	root := m.RootNamespaceOrDefault()
	for _, p := range m.AuthorizationPolicies {
		if p.Action != model.AuthzAllow {
			continue
		}
		if len(p.Rules) == 0 {
			out = append(out, finding(CodeAllowNothing, Warning, "AuthorizationPolicy", p.NamespacedName, p.Source,
				"add rules (a rule {} allows everything), or keep it if denying every request is intended",
				"ALLOW policy without rules allows nothing: every request to %s is denied", scopeText(p, root)))
			continue
		}
		var selected []*model.Workload
		for _, w := range m.Workloads {
			if model.PolicySelects(root, p.Namespace, p.Selector, w.NamespacedName, w.Labels) {
				selected = append(selected, w)
			}
		}
		for i, r := range p.Rules {
			if fields := httpOnlyFields(r); len(fields) > 0 && len(selected) > 0 && allTCP(m, selected) {
				out = append(out, finding(CodeAllowHTTPOnTCP, Warning, "AuthorizationPolicy", p.NamespacedName, p.Source,
					"on TCP only L4 attributes apply: use ports, ipBlocks, principals or namespaces, or declare the port's protocol as HTTP",
					"spec.rules[%d] uses HTTP-only fields (%s) but the selected workloads serve only TCP ports: Istio drops such a rule on TCP, so it allows nothing", i, strings.Join(fields, ", ")))
			}
			if usesJWT(r) && !jwtConfigured(m, root, selected) {
				out = append(out, finding(CodeAllowNeedsJWTRules, Warning, "AuthorizationPolicy", p.NamespacedName, p.Source,
					"add a RequestAuthentication selecting these workloads, or the rule can never match",
					"spec.rules[%d] matches on JWT attributes (requestPrincipals or request.auth.*) but no RequestAuthentication applies to the selected workloads: it allows nothing", i))
			}
		}
	}
	return out
}

func scopeText(p *model.AuthorizationPolicy, root string) string {
	scope := "the workloads of namespace " + p.Namespace
	if p.Namespace == root {
		scope = "every workload of the mesh"
	}
	if len(p.Selector) > 0 {
		scope += " with labels " + labelString(p.Selector)
	}
	return scope
}

// httpOnlyFields lists the fields of a rule that only HTTP traffic has.
func httpOnlyFields(r model.AuthzRule) []string {
	set := map[string]bool{}
	for _, f := range r.From {
		if len(f.RequestPrincipals)+len(f.NotRequestPrincipals) > 0 {
			set["requestPrincipals"] = true
		}
	}
	for _, o := range r.To {
		for name, v := range map[string][]string{"hosts": append(o.Hosts, o.NotHosts...), "methods": append(o.Methods, o.NotMethods...), "paths": append(o.Paths, o.NotPaths...)} {
			if len(v) > 0 {
				set[name] = true
			}
		}
	}
	for _, c := range r.When {
		if strings.HasPrefix(c.Key, "request.") {
			set[c.Key] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

func usesJWT(r model.AuthzRule) bool {
	for _, f := range r.From {
		if len(f.RequestPrincipals) > 0 {
			return true
		}
	}
	for _, c := range r.When {
		if strings.HasPrefix(c.Key, "request.auth.") && len(c.Values) > 0 {
			return true
		}
	}
	return false
}

func jwtConfigured(m *model.Mesh, root string, selected []*model.Workload) bool {
	if len(selected) == 0 {
		return true // reported as SK0101 instead
	}
	for _, w := range selected {
		if len(m.RequestAuthenticationsFor(w.NamespacedName, w.Labels)) == 0 {
			return false
		}
	}
	return true
}

// allTCP reports whether every port of the workloads carries TCP (not HTTP), as the
// services selecting them or their container ports declare.
func allTCP(m *model.Mesh, ws []*model.Workload) bool {
	for _, w := range ws {
		for _, cp := range w.Ports {
			if portProtocol(m, w, cp).IsHTTP() {
				return false
			}
		}
	}
	return true
}

func portProtocol(m *model.Mesh, w *model.Workload, cp model.ContainerPort) model.Protocol {
	for _, s := range m.Services {
		if s.Namespace != w.Namespace || !model.Selects(s.Selector, w.Labels) {
			continue
		}
		for _, sp := range s.Ports {
			if sp.TargetPort == cp.ContainerPort || (sp.TargetPortName != "" && sp.TargetPortName == cp.Name) || (sp.TargetPort == 0 && sp.TargetPortName == "" && sp.Port == cp.ContainerPort) {
				return sp.Protocol
			}
		}
	}
	if cp.AppProtocol != "" {
		return cp.AppProtocol
	}
	return model.ProtocolTCP
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
