// Package istio turns Istio networking.istio.io VirtualService and DestinationRule
// objects into the skein model.
package istio

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedFields is the one place that says which Istio fields skein implements. It is
// an allow list on purpose: a field missing here (fault, retries, mirror, rewrite,
// redirect, corsPolicy, headers, delegate, tls routes, exportTo, connectionPool,
// outlierDetection, consistentHash, queryParams, method, scheme, authority,
// withoutHeaders, sourceLabels, and any field a newer Istio adds) is rejected as "not
// supported yet" instead of being silently ignored. Enabling a feature starts by adding
// its field here.
var supportedFields = map[protoreflect.FullName]bool{
	"istio.networking.v1alpha3.VirtualService.hosts":    true,
	"istio.networking.v1alpha3.VirtualService.gateways": true,
	"istio.networking.v1alpha3.VirtualService.http":     true,
	"istio.networking.v1alpha3.VirtualService.tcp":      true,

	"istio.networking.v1alpha3.HTTPRoute.name":    true,
	"istio.networking.v1alpha3.HTTPRoute.match":   true,
	"istio.networking.v1alpha3.HTTPRoute.route":   true,
	"istio.networking.v1alpha3.HTTPRoute.timeout": true,

	"istio.networking.v1alpha3.HTTPMatchRequest.name":    true,
	"istio.networking.v1alpha3.HTTPMatchRequest.uri":     true,
	"istio.networking.v1alpha3.HTTPMatchRequest.headers": true,
	"istio.networking.v1alpha3.HTTPMatchRequest.port":    true,

	"istio.networking.v1alpha3.StringMatch.exact":  true,
	"istio.networking.v1alpha3.StringMatch.prefix": true,
	"istio.networking.v1alpha3.StringMatch.regex":  true,

	"istio.networking.v1alpha3.HTTPRouteDestination.destination": true,
	"istio.networking.v1alpha3.HTTPRouteDestination.weight":      true,

	"istio.networking.v1alpha3.TCPRoute.match":               true,
	"istio.networking.v1alpha3.TCPRoute.route":               true,
	"istio.networking.v1alpha3.L4MatchAttributes.port":       true,
	"istio.networking.v1alpha3.RouteDestination.destination": true,
	"istio.networking.v1alpha3.RouteDestination.weight":      true,

	"istio.networking.v1alpha3.Destination.host":    true,
	"istio.networking.v1alpha3.Destination.subset":  true,
	"istio.networking.v1alpha3.Destination.port":    true,
	"istio.networking.v1alpha3.PortSelector.number": true,

	"istio.networking.v1alpha3.DestinationRule.host":           true,
	"istio.networking.v1alpha3.DestinationRule.traffic_policy": true,
	"istio.networking.v1alpha3.DestinationRule.subsets":        true,
	"istio.networking.v1alpha3.TrafficPolicy.load_balancer":    true,
	"istio.networking.v1alpha3.LoadBalancerSettings.simple":    true, // ROUND_ROBIN, LEAST_REQUEST
	"istio.networking.v1alpha3.Subset.name":                    true,
	"istio.networking.v1alpha3.Subset.labels":                  true,
	"istio.networking.v1alpha3.Subset.traffic_policy":          true,
}

// AllowField reports whether skein implements an Istio field (see supportedFields).
func AllowField(fd protoreflect.FieldDescriptor) bool {
	if fd.ContainingMessage().IsMapEntry() {
		return true
	}
	if supportedFields[fd.FullName()] || clientTLSFields[fd.FullName()] || securityFields[fd.FullName()] {
		return true
	}
	if extraFields[fd.FullName()] {
		return true
	}
	for _, f := range sidecarFields {
		if protoreflect.FullName(f) == fd.FullName() {
			return true
		}
	}
	return false
}

// extraFields collects allow lists registered by feature files with allowFields, so
// each feature (routing, traffic policy, ServiceEntry, gateways...) keeps its fields
// next to its adapter code.
var extraFields = map[protoreflect.FullName]bool{}

// allowFields registers implemented Istio fields by full proto name; call it from an
// init function of the file that implements them.
func allowFields(names ...string) {
	for _, n := range names {
		extraFields[protoreflect.FullName(n)] = true
	}
}
