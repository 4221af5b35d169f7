package istio

import (
	"fmt"
	"regexp"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// issues collects problems by field path; the loader adds lines.
type issues []strict.Issue

func (is *issues) add(path, format string, args ...any) {
	*is = append(*is, strict.Issue{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// VirtualService translates a checked VirtualService spec of the object nn. Hosts, and
// destination hosts, are resolved to FQDNs relative to nn's namespace.
func VirtualService(nn model.NamespacedName, spec *networking.VirtualService, suffix string) (*model.VirtualService, []strict.Issue) {
	var is issues
	out := &model.VirtualService{NamespacedName: nn}
	delegate := len(spec.GetHosts()) == 0 // a delegate VirtualService (see delegate.go)
	if delegate {
		checkDelegate(spec, &is)
	}
	mesh := len(spec.GetGateways()) == 0
	for i, g := range spec.GetGateways() {
		if g == "" {
			is.add(strict.Index("spec.gateways", i), "gateway name must not be empty")
		}
		ref := GatewayRef(g, nn.Namespace)
		mesh = mesh || ref == "mesh"
		out.Gateways = append(out.Gateways, ref)
	}
	for i, h := range spec.GetHosts() {
		path := strict.Index("spec.hosts", i)
		switch {
		case h == "":
			is.add(path, "host must not be empty")
		case (h == "*" || h[0] == '*') && mesh:
			// Gateways match wildcard hosts against their servers' hosts; sidecars
			// route by service, where skein does not take wildcards yet.
			is.add(path, "wildcard host %q is not supported yet by skein for the mesh (only on gateways)", h)
		}
		out.Hosts = append(out.Hosts, ResolveHost(h, nn.Namespace, suffix))
	}
	if len(spec.GetHttp()) == 0 && len(spec.GetTcp()) == 0 && len(spec.GetTls()) == 0 {
		is.add("spec", "at least one http, tcp or tls route is required")
	}
	for i, r := range spec.GetHttp() {
		out.HTTP = append(out.HTTP, httpRoute(r, strict.Index("spec.http", i), nn.Namespace, suffix, &is))
	}
	for i, r := range spec.GetTcp() {
		out.TCP = append(out.TCP, tcpRoutes(r, strict.Index("spec.tcp", i), nn.Namespace, suffix, &is)...)
	}
	for i, r := range spec.GetTls() {
		out.TLS = append(out.TLS, tlsRoutes(r, strict.Index("spec.tls", i), nn.Namespace, suffix, &is)...)
	}
	return out, is
}

func httpRoute(r *networking.HTTPRoute, path, ns, suffix string, is *issues) model.HTTPRoute {
	out := model.HTTPRoute{Name: r.GetName()}
	for i, m := range r.GetMatch() {
		mpath := strict.Index(strict.Field(path, "match"), i)
		hm := model.HTTPMatch{Name: m.GetName(), Port: int(m.GetPort())}
		if m.GetPort() > 65535 {
			is.add(strict.Field(mpath, "port"), "port %d out of range [1, 65535]", m.GetPort())
		}
		if m.GetUri() != nil {
			sm := stringMatch(m.GetUri(), strict.Field(mpath, "uri"), is)
			hm.URI = &sm
		}
		for _, name := range model.SortedKeys(m.GetHeaders()) {
			hpath := strict.Key(strict.Field(mpath, "headers"), name)
			if name == "" {
				is.add(hpath, "header name must not be empty")
			}
			if hm.Headers == nil {
				hm.Headers = map[string]model.StringMatch{}
			}
			if m.GetHeaders()[name].GetMatchType() == nil {
				hm.Headers[name] = model.StringMatch{Kind: model.MatchPresent}
				continue
			}
			hm.Headers[name] = stringMatch(m.GetHeaders()[name], hpath, is)
		}
		httpMatchExtras(m, &hm, mpath, is)
		for _, g := range m.GetGateways() {
			hm.Gateways = append(hm.Gateways, GatewayRef(g, ns))
		}
		out.Matches = append(out.Matches, hm)
	}
	if r.GetDelegate() != nil {
		out.Delegate = delegateRef(r, path, ns, is)
	} else if len(r.GetRoute()) == 0 && r.GetRedirect() == nil {
		is.add(strict.Field(path, "route"), "at least one route destination (or a redirect) is required")
	}
	weights := make([]int32, len(r.GetRoute()))
	for i, d := range r.GetRoute() {
		weights[i] = d.GetWeight()
	}
	resolved := resolveWeights(weights, strict.Field(path, "route"), is)
	for i, d := range r.GetRoute() {
		dpath := strict.Field(strict.Index(strict.Field(path, "route"), i), "destination")
		out.Destinations = append(out.Destinations, destination(d.GetDestination(), resolved[i], dpath, ns, suffix, is))
	}
	if t := r.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() < 0 {
			is.add(strict.Field(path, "timeout"), "invalid timeout")
		}
		out.Timeout = t.AsDuration()
		if out.Timeout > 0 && out.Timeout < time.Millisecond {
			is.add(strict.Field(path, "timeout"), "timeout must be at least 1ms (0 disables it)")
		}
	}
	httpActions(r, &out, path, ns, suffix, is)
	return out
}

// tcpRoutes returns one model route per match (a TCP match has a port only), which
// keeps first-match-wins order; no match is one route for any port.
func tcpRoutes(r *networking.TCPRoute, path, ns, suffix string, is *issues) []model.TCPRoute {
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
		return []model.TCPRoute{{Destinations: dests}}
	}
	var out []model.TCPRoute
	for i, m := range r.GetMatch() {
		if m.GetPort() > 65535 {
			is.add(strict.Field(strict.Index(strict.Field(path, "match"), i), "port"), "port %d out of range [1, 65535]", m.GetPort())
		}
		mpath := strict.Index(strict.Field(path, "match"), i)
		out = append(out, model.TCPRoute{Port: int(m.GetPort()), Destinations: dests,
			L4Conditions: l4Conditions(m.GetDestinationSubnets(), m.GetSourceLabels(), m.GetSourceNamespace(), mpath, is)})
	}
	return out
}

// resolveWeights applies Istio's rule: a single destination takes all traffic; several
// must have weights that add up to 100 (Istio only warns; skein refuses, because the
// split would otherwise be a guess), an unset weight counting as 0.
func resolveWeights(w []int32, path string, is *issues) []int {
	out := make([]int, len(w))
	if len(w) == 1 {
		out[0] = 100
		if w[0] < 0 || w[0] > 100 {
			is.add(strict.Field(strict.Index(path, 0), "weight"), "weight %d out of range [0, 100]", w[0])
		}
		return out
	}
	sum, valid := 0, true
	for i, v := range w {
		if v < 0 || v > 100 {
			is.add(strict.Field(strict.Index(path, i), "weight"), "weight %d out of range [0, 100]", v)
			valid = false
		}
		out[i] = int(v)
		sum += int(v)
	}
	if valid && len(w) > 1 && sum != 100 {
		is.addCode(CodeWeightSum, path, "weights of the %d destinations add up to %d, they must add up to 100 (an unset weight is 0)", len(w), sum)
	}
	return out
}

func destination(d *networking.Destination, weight int, path, ns, suffix string, is *issues) model.RouteDestination {
	out := model.RouteDestination{Weight: weight, Subset: d.GetSubset()}
	if d == nil || d.GetHost() == "" {
		is.add(strict.Field(path, "host"), "host is required")
	} else {
		out.Host = ResolveHost(d.GetHost(), ns, suffix)
	}
	if p := d.GetPort(); p != nil {
		if p.GetNumber() < 1 || p.GetNumber() > 65535 {
			is.add(strict.Field(path, "port.number"), "port %d out of range [1, 65535]", p.GetNumber())
		}
		out.Port = int(p.GetNumber())
	}
	return out
}

func stringMatch(m *networking.StringMatch, path string, is *issues) model.StringMatch {
	switch v := m.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return model.StringMatch{Kind: model.MatchExact, Value: v.Exact}
	case *networking.StringMatch_Prefix:
		return model.StringMatch{Kind: model.MatchPrefix, Value: v.Prefix}
	case *networking.StringMatch_Regex:
		if _, err := regexp.Compile(v.Regex); err != nil {
			is.add(strict.Field(path, "regex"), "invalid RE2 regular expression: %v", err)
		}
		return model.StringMatch{Kind: model.MatchRegex, Value: v.Regex}
	}
	is.add(path, "one of exact, prefix or regex is required")
	return model.StringMatch{}
}
