package model

import (
	"strings"
	"time"
)

// RootNamespace is Istio's default config root namespace: a Sidecar there without a
// workload selector is the mesh-wide default.
const RootNamespace = "istio-system"

// Sidecar is the part of Istio's Sidecar resource skein honours: which services a
// workload's proxy is configured for (its egress hosts). Istio users write it to stop
// every sidecar from holding the config of the whole mesh.
type Sidecar struct {
	NamespacedName
	// WorkloadSelector: the labels of the proxies it applies to, in its namespace; empty
	// means every proxy of the namespace (or of the mesh, in RootNamespace).
	WorkloadSelector map[string]string `json:"workloadSelector,omitempty"`
	// EgressHosts are "namespace/dnsName" entries, as validated by the config adapter:
	// namespace is a name, "*" (any), "." (the Sidecar's own) or "~" (none); dnsName is
	// "*", "*.suffix" or a fully qualified host.
	EgressHosts []string `json:"egressHosts"`
	// InferFromTraffic adds to the egress hosts the services the proxy's workload was
	// seen using (asked for on demand, or reported), each until unused for InferredTTL.
	InferFromTraffic bool          `json:"inferFromTraffic,omitempty"`
	InferredTTL      time.Duration `json:"inferredTTL,omitempty"`
	Source           Source        `json:"source"`
}

// DefaultInferredTTL is how long a host seen in traffic stays in scope unused.
const DefaultInferredTTL = time.Hour

// Imports reports whether a service (its FQDN and namespace) is among the Sidecar's
// egress hosts.
func (s *Sidecar) Imports(host, namespace string) bool {
	for _, h := range s.EgressHosts {
		ns, dns, ok := strings.Cut(h, "/")
		if !ok {
			continue
		}
		switch ns {
		case "*":
		case ".":
			if namespace != s.Namespace {
				continue
			}
		case "~":
			continue
		default:
			if namespace != ns {
				continue
			}
		}
		if HostMatches(dns, host) {
			return true
		}
	}
	return false
}

// HostMatches reports whether host matches pattern: "*", "*.suffix" (at least one
// character before the suffix) or an exact name.
func HostMatches(pattern, host string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return len(host) > len(pattern)-1 && strings.HasSuffix(host, pattern[1:])
	}
	return pattern == host
}

// SidecarFor returns the Sidecar that scopes a proxy, as Istio chooses it: a Sidecar of
// the proxy's namespace whose workload selector matches the proxy's labels, else the
// namespace's Sidecar without a selector, else the RootNamespace's without a selector;
// among several candidates the first in source order. nil means no scoping: the proxy
// gets the whole mesh.
func (m *Mesh) SidecarFor(namespace string, labels map[string]string) *Sidecar {
	var nsDefault, rootDefault *Sidecar
	for _, s := range m.Sidecars {
		switch {
		case s.Namespace == namespace && len(s.WorkloadSelector) > 0:
			if Selects(s.WorkloadSelector, labels) {
				return s
			}
		case s.Namespace == namespace && nsDefault == nil:
			nsDefault = s
		case s.Namespace == RootNamespace && len(s.WorkloadSelector) == 0 && rootDefault == nil:
			rootDefault = s
		}
	}
	if nsDefault != nil {
		return nsDefault
	}
	return rootDefault
}
