package analyze

import (
	"sort"
	"strings"

	"skein.dev/skein/internal/model"
)

// CodeSelectsNoWorkload: a security policy whose scope contains no workload.
const CodeSelectsNoWorkload = "SK0101"

func init() {
	register(Check{Name: "policy-selects-no-workload", Codes: []string{CodeSelectsNoWorkload}, Run: checkSelectsNoWorkload})
}

// checkSelectsNoWorkload reports AuthorizationPolicies, RequestAuthentications and
// PeerAuthentications that apply to no workload of the folder.
func checkSelectsNoWorkload(m *model.Mesh) []Finding {
	var out []Finding
	report := func(kind string, nn model.NamespacedName, selector map[string]string, src model.Source) {
		root := m.RootNamespaceOrDefault()
		for _, w := range m.Workloads {
			if model.PolicySelects(root, nn.Namespace, selector, w.NamespacedName, w.Labels) {
				return
			}
		}
		scope := "namespace " + nn.Namespace
		if nn.Namespace == root {
			scope = "the mesh (root namespace " + root + ")"
		}
		if len(selector) == 0 {
			out = append(out, finding(CodeSelectsNoWorkload, Warning, kind, nn, src,
				"check metadata.namespace: the policy applies to workloads of its own namespace only",
				"selects no workload: %s has no workloads", scope))
			return
		}
		out = append(out, finding(CodeSelectsNoWorkload, Warning, kind, nn, src,
			"fix spec.selector.matchLabels to match a workload's labels, or remove the policy",
			"selects no workload: no workload in %s has labels %s", scope, labelString(selector)))
	}
	for _, p := range m.AuthorizationPolicies {
		report("AuthorizationPolicy", p.NamespacedName, p.Selector, p.Source)
	}
	for _, p := range m.RequestAuthentications {
		report("RequestAuthentication", p.NamespacedName, p.Selector, p.Source)
	}
	for _, p := range m.PeerAuthentications {
		if len(p.Selector) > 0 { // a namespace or mesh-wide PeerAuthentication is a default
			report("PeerAuthentication", p.NamespacedName, p.Selector, p.Source)
		}
	}
	return out
}

func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}
