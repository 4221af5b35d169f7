package istio

import "google.golang.org/protobuf/reflect/protoreflect"

// securityFields is the allow list of security.istio.io fields skein implements (see
// supportedFields). Not listed, so rejected as "not supported yet": targetRef and
// targetRefs (waypoints and gateways), Source.trustDomains/notTrustDomains,
// JWTRule.fromCookies, spaceDelimitedClaims and presence.
var securityFields = map[protoreflect.FullName]bool{
	"istio.security.v1beta1.AuthorizationPolicy.selector": true,
	"istio.security.v1beta1.AuthorizationPolicy.rules":    true,
	"istio.security.v1beta1.AuthorizationPolicy.action":   true,
	// Accepted by the schema so that a CUSTOM policy gets a clear error of its own.
	"istio.security.v1beta1.AuthorizationPolicy.provider":               true,
	"istio.security.v1beta1.AuthorizationPolicy.ExtensionProvider.name": true,

	"istio.type.v1beta1.WorkloadSelector.match_labels": true,

	"istio.security.v1beta1.Rule.from":            true,
	"istio.security.v1beta1.Rule.to":              true,
	"istio.security.v1beta1.Rule.when":            true,
	"istio.security.v1beta1.Rule.From.source":     true,
	"istio.security.v1beta1.Rule.To.operation":    true,
	"istio.security.v1beta1.Condition.key":        true,
	"istio.security.v1beta1.Condition.values":     true,
	"istio.security.v1beta1.Condition.not_values": true,

	"istio.security.v1beta1.Source.principals":             true,
	"istio.security.v1beta1.Source.not_principals":         true,
	"istio.security.v1beta1.Source.request_principals":     true,
	"istio.security.v1beta1.Source.not_request_principals": true,
	"istio.security.v1beta1.Source.namespaces":             true,
	"istio.security.v1beta1.Source.not_namespaces":         true,
	"istio.security.v1beta1.Source.service_accounts":       true,
	"istio.security.v1beta1.Source.not_service_accounts":   true,
	"istio.security.v1beta1.Source.ip_blocks":              true,
	"istio.security.v1beta1.Source.not_ip_blocks":          true,
	"istio.security.v1beta1.Source.remote_ip_blocks":       true,
	"istio.security.v1beta1.Source.not_remote_ip_blocks":   true,

	"istio.security.v1beta1.Operation.hosts":       true,
	"istio.security.v1beta1.Operation.not_hosts":   true,
	"istio.security.v1beta1.Operation.ports":       true,
	"istio.security.v1beta1.Operation.not_ports":   true,
	"istio.security.v1beta1.Operation.methods":     true,
	"istio.security.v1beta1.Operation.not_methods": true,
	"istio.security.v1beta1.Operation.paths":       true,
	"istio.security.v1beta1.Operation.not_paths":   true,

	"istio.security.v1beta1.RequestAuthentication.selector":   true,
	"istio.security.v1beta1.RequestAuthentication.jwt_rules":  true,
	"istio.security.v1beta1.JWTRule.issuer":                   true,
	"istio.security.v1beta1.JWTRule.audiences":                true,
	"istio.security.v1beta1.JWTRule.jwks_uri":                 true,
	"istio.security.v1beta1.JWTRule.jwks":                     true,
	"istio.security.v1beta1.JWTRule.from_headers":             true,
	"istio.security.v1beta1.JWTRule.from_params":              true,
	"istio.security.v1beta1.JWTRule.output_payload_to_header": true,
	"istio.security.v1beta1.JWTRule.forward_original_token":   true,
	"istio.security.v1beta1.JWTRule.output_claim_to_headers":  true,
	"istio.security.v1beta1.JWTRule.timeout":                  true,
	"istio.security.v1beta1.JWTHeader.name":                   true,
	"istio.security.v1beta1.JWTHeader.prefix":                 true,
	"istio.security.v1beta1.ClaimToHeader.header":             true,
	"istio.security.v1beta1.ClaimToHeader.claim":              true,
}
