package model

import (
	"sort"
	"strings"
)

// DefaultRootNamespace is Istio's default meshConfig.rootNamespace: policies there
// without a selector apply to the whole mesh.
const DefaultRootNamespace = "istio-system"

// DefaultTrustDomain is the trust domain of workload SPIFFE IDs when none is configured.
const DefaultTrustDomain = "cluster.local"

// Security is what the translator needs from the mesh's certificate authority. A nil
// Mesh.Security means there is no CA: every connection stays plaintext.
type Security struct {
	// TrustDomain of workload identities, e.g. cluster.local.
	TrustDomain string `json:"trustDomain"`
	// RootCertsPEM is the trust bundle (concatenated PEM), current root first. It is
	// sent to proxies as the SDS secret ROOTCA.
	RootCertsPEM string `json:"rootCertsPEM"`
}

// RootNamespaceOrDefault returns the mesh root namespace in effect.
func (m *Mesh) RootNamespaceOrDefault() string {
	if m.RootNamespace == "" {
		return DefaultRootNamespace
	}
	return m.RootNamespace
}

// SPIFFEID returns the workload identity of a service account in a namespace.
func (s *Security) SPIFFEID(namespace, serviceAccount string) string {
	td := DefaultTrustDomain
	if s != nil && s.TrustDomain != "" {
		td = s.TrustDomain
	}
	return "spiffe://" + td + "/ns/" + namespace + "/sa/" + serviceAccount
}

// MTLSMode is a PeerAuthentication mode. The empty mode (UNSET) inherits from the
// parent scope: port → workload → namespace → mesh → PERMISSIVE.
type MTLSMode string

const (
	MTLSUnset      MTLSMode = ""
	MTLSDisable    MTLSMode = "DISABLE"
	MTLSPermissive MTLSMode = "PERMISSIVE"
	MTLSStrict     MTLSMode = "STRICT"
)

// PeerAuthentication is Istio's security.istio.io PeerAuthentication: which mTLS mode
// a workload's inbound ports accept.
type PeerAuthentication struct {
	NamespacedName
	// Selector chooses workloads of the policy's namespace by labels; empty means the
	// whole namespace (or, in the root namespace, the whole mesh).
	Selector map[string]string `json:"selector,omitempty"`
	Mode     MTLSMode          `json:"mode,omitempty"`
	// PortLevel overrides Mode per workload (container) port; only with a Selector.
	PortLevel map[int]MTLSMode `json:"portLevel,omitempty"`
	Source    Source           `json:"source"`
}

// TLSMode is a DestinationRule trafficPolicy.tls mode: how a client originates TLS.
type TLSMode string

const (
	TLSDisable     TLSMode = "DISABLE"
	TLSSimple      TLSMode = "SIMPLE"
	TLSMutual      TLSMode = "MUTUAL"
	TLSIstioMutual TLSMode = "ISTIO_MUTUAL"
)

// ClientTLS is a DestinationRule's TLS origination setting. Certificates are file paths
// read by the proxy (credentialName is not supported).
type ClientTLS struct {
	Mode              TLSMode  `json:"mode"`
	CACertificates    string   `json:"caCertificates,omitempty"`
	ClientCertificate string   `json:"clientCertificate,omitempty"`
	PrivateKey        string   `json:"privateKey,omitempty"`
	SNI               string   `json:"sni,omitempty"`
	SubjectAltNames   []string `json:"subjectAltNames,omitempty"`
}

// PortTrafficPolicy is one entry of trafficPolicy.portLevelSettings.
type PortTrafficPolicy struct {
	Port             int                   `json:"port"`
	LoadBalancer     *LoadBalancerSettings `json:"loadBalancer,omitempty"`
	ConnectionPool   *ConnectionPool       `json:"connectionPool,omitempty"`
	OutlierDetection *OutlierDetection     `json:"outlierDetection,omitempty"`
	TLS              *ClientTLS            `json:"tls,omitempty"`
}

// EffectivePeerAuthentication resolves the mTLS mode of one workload port with Istio's
// precedence: a port-level setting of the workload policy, then the workload policy
// (selector), then the namespace policy, then the mesh policy (root namespace, no
// selector), then PERMISSIVE. UNSET at any level inherits from the next. When several
// policies compete at one level, the first in source order wins (Istio: the oldest).
func (m *Mesh) EffectivePeerAuthentication(namespace string, labels map[string]string, port int) MTLSMode {
	root := m.RootNamespaceOrDefault()
	var workload, ns, mesh *PeerAuthentication
	for _, pa := range m.PeerAuthentications {
		switch {
		case len(pa.Selector) > 0:
			if pa.Namespace == namespace && workload == nil && Selects(pa.Selector, labels) {
				workload = pa
			}
		case pa.Namespace == namespace && pa.Namespace != root:
			if ns == nil {
				ns = pa
			}
		case pa.Namespace == root:
			if mesh == nil {
				mesh = pa
			}
		}
	}
	if workload != nil {
		if mode := workload.PortLevel[port]; mode != MTLSUnset {
			return mode
		}
		if workload.Mode != MTLSUnset {
			return workload.Mode
		}
	}
	if ns != nil && ns.Mode != MTLSUnset {
		return ns.Mode
	}
	if mesh != nil && mesh.Mode != MTLSUnset {
		return mesh.Mode
	}
	return MTLSPermissive
}

// ServiceAccounts returns the SPIFFE IDs of the workloads a service selects, sorted:
// the identities a client expects behind the service.
func (m *Mesh) ServiceAccounts(svc *Service) []string {
	seen := map[string]bool{}
	for _, w := range m.Workloads {
		if w.Namespace != svc.Namespace || !Selects(svc.Selector, w.Labels) {
			continue
		}
		sa := w.ServiceAccount
		if sa == "" {
			sa = "default"
		}
		seen[m.Security.SPIFFEID(w.Namespace, sa)] = true
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// PrincipalOf turns a SPIFFE ID into Istio's principal form (no scheme), as used by
// AuthorizationPolicy source.principals: spiffe://cluster.local/ns/a/sa/b → cluster.local/ns/a/sa/b.
func PrincipalOf(spiffeID string) string { return strings.TrimPrefix(spiffeID, "spiffe://") }

// ClientTLSFor returns the TLS origination setting for a port of the rule's host and a
// subset ("" for the whole host), merged as Istio merges traffic policies
// (EffectiveTrafficPolicy). nil means the rule says nothing about TLS (auto-mTLS
// decides).
func (dr *DestinationRule) ClientTLSFor(subset string, port int) *ClientTLS {
	if tp := dr.EffectiveTrafficPolicy(subset, port); tp != nil {
		return tp.TLS
	}
	return nil
}
