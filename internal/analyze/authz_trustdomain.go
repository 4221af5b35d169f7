package analyze

import (
	"fmt"
	"strings"

	"skein.dev/skein/internal/model"
)

// CodeForeignTrustDomain: a principal names a trust domain that is not the mesh's.
const CodeForeignTrustDomain = "SK0102"

func init() {
	register(Check{Name: "principal-trust-domain", Codes: []string{CodeForeignTrustDomain}, Run: checkTrustDomain})
}

// checkTrustDomain looks at principals, notPrincipals and source.principal conditions:
// "<trust domain>/ns/<ns>/sa/<sa>" whose trust domain is not the mesh's can only match
// peers from another mesh (skein's CA issues identities of its own domain only).
func checkTrustDomain(m *model.Mesh) []Finding {
	td := m.TrustDomainOrDefault()
	var out []Finding
	for _, p := range m.AuthorizationPolicies {
		seen := map[string]bool{}
		check := func(field, v string) {
			if strings.HasPrefix(v, "*") || seen[v] {
				return
			}
			dom, _, ok := strings.Cut(v, "/")
			if !ok || dom == td || strings.HasSuffix(dom, "*") {
				return
			}
			seen[v] = true
			out = append(out, finding(CodeForeignTrustDomain, Warning, "AuthorizationPolicy", p.NamespacedName, p.Source,
				fmt.Sprintf("principals are <trust domain>/ns/<namespace>/sa/<service account>; this mesh's trust domain is %q", td),
				"%s %q is in trust domain %q, not this mesh's %q: it matches no workload of this mesh", field, v, dom, td))
		}
		for i, r := range p.Rules {
			for j, f := range r.From {
				for _, v := range f.Principals {
					check(fmt.Sprintf("spec.rules[%d].from[%d].source.principals", i, j), v)
				}
				for _, v := range f.NotPrincipals {
					check(fmt.Sprintf("spec.rules[%d].from[%d].source.notPrincipals", i, j), v)
				}
			}
			for j, c := range r.When {
				if c.Key != "source.principal" {
					continue
				}
				for _, v := range append(append([]string(nil), c.Values...), c.NotValues...) {
					check(fmt.Sprintf("spec.rules[%d].when[%d]", i, j), v)
				}
			}
		}
	}
	return out
}
