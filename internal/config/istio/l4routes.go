package istio

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

func init() {
	allowFields(
		"istio.networking.v1alpha3.L4MatchAttributes.destination_subnets",
		"istio.networking.v1alpha3.L4MatchAttributes.source_labels",
		"istio.networking.v1alpha3.L4MatchAttributes.source_namespace",
		"istio.networking.v1alpha3.VirtualService.tls",
		"istio.networking.v1alpha3.TLSRoute.match",
		"istio.networking.v1alpha3.TLSRoute.route",
		"istio.networking.v1alpha3.TLSMatchAttributes.sni_hosts",
		"istio.networking.v1alpha3.TLSMatchAttributes.port",
		"istio.networking.v1alpha3.TLSMatchAttributes.destination_subnets",
		"istio.networking.v1alpha3.TLSMatchAttributes.source_labels",
		"istio.networking.v1alpha3.TLSMatchAttributes.source_namespace",
	)
}

// l4Conditions checks a tcp or tls match's destinationSubnets (CIDRs or IPs),
// sourceLabels and sourceNamespace.
func l4Conditions(subnets []string, labels map[string]string, ns, path string, is *issues) model.L4Conditions {
	for i, s := range subnets {
		if _, err := model.ParseSubnet(s); err != nil {
			is.add(strict.Index(strict.Field(path, "destinationSubnets"), i), "%q is neither a CIDR nor an IP", s)
		}
	}
	if ns != "" {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			is.add(strict.Field(path, "sourceNamespace"), "invalid namespace %q: %s", ns, msgs[0])
		}
	}
	return model.L4Conditions{DestinationSubnets: subnets, SourceLabels: labels, SourceNamespace: ns}
}

// tlsRoutes returns one model route per match, in order (first match wins); Istio
// requires a match with sniHosts on every tls route.
func tlsRoutes(r *networking.TLSRoute, path, ns, suffix string, is *issues) []model.TLSRoute {
	if len(r.GetRoute()) == 0 {
		is.add(strict.Field(path, "route"), "at least one route destination is required")
	}
	weights := make([]int32, len(r.GetRoute()))
	for i, d := range r.GetRoute() {
		weights[i] = d.GetWeight()
	}
	resolved := resolveWeights(weights, strict.Field(path, "route"), is)
	var dests []model.RouteDestination
	for i, d := range r.GetRoute() {
		dpath := strict.Field(strict.Index(strict.Field(path, "route"), i), "destination")
		dests = append(dests, destination(d.GetDestination(), resolved[i], dpath, ns, suffix, is))
	}
	if len(r.GetMatch()) == 0 {
		is.add(strict.Field(path, "match"), "a tls route needs a match with sniHosts")
	}
	var out []model.TLSRoute
	for i, m := range r.GetMatch() {
		mpath := strict.Index(strict.Field(path, "match"), i)
		if len(m.GetSniHosts()) == 0 {
			is.add(strict.Field(mpath, "sniHosts"), "at least one SNI host is required")
		}
		for j, h := range m.GetSniHosts() {
			name := strings.TrimPrefix(h, "*.")
			if h == "*" {
				continue
			}
			if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 || strings.Contains(name, "*") {
				is.add(strict.Index(strict.Field(mpath, "sniHosts"), j), "invalid SNI host %q: want a DNS name or *.suffix", h)
			}
		}
		if m.GetPort() > 65535 {
			is.add(strict.Field(mpath, "port"), "port %d out of range [1, 65535]", m.GetPort())
		}
		out = append(out, model.TLSRoute{
			SNIHosts:     m.GetSniHosts(),
			Port:         int(m.GetPort()),
			L4Conditions: l4Conditions(m.GetDestinationSubnets(), m.GetSourceLabels(), m.GetSourceNamespace(), mpath, is),
			Destinations: dests,
		})
	}
	return out
}
