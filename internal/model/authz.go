package model

import "time"

// TrustDomainOrDefault returns the trust domain of workload identities in effect.
func (m *Mesh) TrustDomainOrDefault() string {
	if m.Security == nil || m.Security.TrustDomain == "" {
		return DefaultTrustDomain
	}
	return m.Security.TrustDomain
}

// AuthzAction is what an AuthorizationPolicy does with the requests its rules match.
type AuthzAction string

const (
	AuthzAllow AuthzAction = "ALLOW"
	AuthzDeny  AuthzAction = "DENY"
	AuthzAudit AuthzAction = "AUDIT"
)

// AuthorizationPolicy is Istio's security.istio.io AuthorizationPolicy (CUSTOM is not
// supported). A policy applies to the workloads of its namespace whose labels contain
// Selector (every workload when Selector is empty); in the root namespace it applies
// to the workloads of every namespace.
type AuthorizationPolicy struct {
	NamespacedName
	Selector map[string]string `json:"selector,omitempty"`
	Action   AuthzAction       `json:"action"`
	// Rules: a request matches the policy when it matches any rule. No rules: the
	// policy matches nothing (an ALLOW policy without rules denies everything).
	Rules  []AuthzRule `json:"rules,omitempty"`
	Source Source      `json:"source"`
}

// AuthzRule matches when one of From (or From is empty), one of To (or To is empty)
// and every When condition match. An empty rule matches every request.
type AuthzRule struct {
	From []AuthzSource    `json:"from,omitempty"`
	To   []AuthzOperation `json:"to,omitempty"`
	When []AuthzCondition `json:"when,omitempty"`
}

// AuthzSource is Istio's Rule.From.source: its set fields are ANDed, the values of a
// field ORed; Not* fields match when none of their values does.
type AuthzSource struct {
	Principals           []string `json:"principals,omitempty"`
	NotPrincipals        []string `json:"notPrincipals,omitempty"`
	RequestPrincipals    []string `json:"requestPrincipals,omitempty"`
	NotRequestPrincipals []string `json:"notRequestPrincipals,omitempty"`
	Namespaces           []string `json:"namespaces,omitempty"`
	NotNamespaces        []string `json:"notNamespaces,omitempty"`
	ServiceAccounts      []string `json:"serviceAccounts,omitempty"`
	NotServiceAccounts   []string `json:"notServiceAccounts,omitempty"`
	IPBlocks             []string `json:"ipBlocks,omitempty"`
	NotIPBlocks          []string `json:"notIpBlocks,omitempty"`
	RemoteIPBlocks       []string `json:"remoteIpBlocks,omitempty"`
	NotRemoteIPBlocks    []string `json:"notRemoteIpBlocks,omitempty"`
}

// AuthzOperation is Istio's Rule.To.operation.
type AuthzOperation struct {
	Hosts      []string `json:"hosts,omitempty"`
	NotHosts   []string `json:"notHosts,omitempty"`
	Ports      []string `json:"ports,omitempty"`
	NotPorts   []string `json:"notPorts,omitempty"`
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	Paths      []string `json:"paths,omitempty"`
	NotPaths   []string `json:"notPaths,omitempty"`
}

// AuthzCondition is one `when` entry: an Istio attribute key (request.headers[x-a],
// source.ip, request.auth.claims[groups], ...) and the values it may (not) have.
type AuthzCondition struct {
	Key       string   `json:"key"`
	Values    []string `json:"values,omitempty"`
	NotValues []string `json:"notValues,omitempty"`
}

// RequestAuthentication is Istio's RequestAuthentication: which JWTs the selected
// workloads accept. An invalid token is rejected (401); a request without a token
// passes (an AuthorizationPolicy may then require requestPrincipals).
type RequestAuthentication struct {
	NamespacedName
	Selector map[string]string `json:"selector,omitempty"`
	JWTRules []JWTRule         `json:"jwtRules,omitempty"`
	Source   Source            `json:"source"`
}

// JWTRule describes one accepted token issuer.
type JWTRule struct {
	Issuer    string   `json:"issuer"`
	Audiences []string `json:"audiences,omitempty"`
	// JWKSURI is fetched by the proxy; JWKS is an inline key set (JSON). One is set.
	JWKSURI string `json:"jwksUri,omitempty"`
	JWKS    string `json:"jwks,omitempty"`
	// FromHeaders and FromParams say where the token is; both empty means Istio's
	// default: `Authorization: Bearer <token>` and the `access_token` query parameter.
	FromHeaders           []JWTHeader     `json:"fromHeaders,omitempty"`
	FromParams            []string        `json:"fromParams,omitempty"`
	ForwardOriginalToken  bool            `json:"forwardOriginalToken,omitempty"`
	OutputPayloadToHeader string          `json:"outputPayloadToHeader,omitempty"`
	OutputClaimToHeaders  []ClaimToHeader `json:"outputClaimToHeaders,omitempty"`
	// Timeout bounds a JWKS fetch; 0 means Istio's default (5 s).
	Timeout time.Duration `json:"timeout,omitempty"`
}

// JWTHeader is a header that carries the token after an optional prefix ("Bearer ").
type JWTHeader struct {
	Name   string `json:"name"`
	Prefix string `json:"prefix,omitempty"`
}

// ClaimToHeader copies a claim of a valid token into a request header.
type ClaimToHeader struct {
	Header string `json:"header"`
	Claim  string `json:"claim"`
}

// PolicySelects reports whether a policy in namespace policyNS with the given workload
// selector applies to a workload, as Istio scopes security policies: same namespace (or
// the root namespace), and every selector label present on the workload; an empty
// selector selects every workload in scope.
func PolicySelects(root, policyNS string, selector map[string]string, workload NamespacedName, labels map[string]string) bool {
	if policyNS != workload.Namespace && policyNS != root {
		return false
	}
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// AuthorizationPoliciesFor returns the policies that apply to a workload, in mesh order.
func (m *Mesh) AuthorizationPoliciesFor(workload NamespacedName, labels map[string]string) []*AuthorizationPolicy {
	var out []*AuthorizationPolicy
	for _, p := range m.AuthorizationPolicies {
		if PolicySelects(m.RootNamespaceOrDefault(), p.Namespace, p.Selector, workload, labels) {
			out = append(out, p)
		}
	}
	return out
}

// RequestAuthenticationsFor returns the RequestAuthentications that apply to a workload.
func (m *Mesh) RequestAuthenticationsFor(workload NamespacedName, labels map[string]string) []*RequestAuthentication {
	var out []*RequestAuthentication
	for _, p := range m.RequestAuthentications {
		if PolicySelects(m.RootNamespaceOrDefault(), p.Namespace, p.Selector, workload, labels) {
			out = append(out, p)
		}
	}
	return out
}
