package config

import (
	"crypto/tls"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"

	"skein.dev/skein/internal/config/gatewayapi"
	"skein.dev/skein/internal/config/istio"
	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// kindIstioGateway is networking.istio.io Gateway; its kind name collides with the
// Gateway API's, so the loader keys it by this name.
const kindIstioGateway = "Gateway.networking.istio.io"

func istioGatewayKind() kind {
	return kind{
		name: kindIstioGateway, apiVersions: istioVersions, kind: "Gateway",
		checkType:  reflect.TypeFor[istioObject[networking.Gateway]](),
		allowField: istio.AllowField,
		build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
			var spec networking.Gateway
			if issues := decodeIstio(data, &spec); issues != nil {
				return nil, nil, issues
			}
			gw, issues := istio.IstioGateway(nn, &spec)
			return gw, &spec, issues
		},
	}
}

// bindIstioGateways builds the model of each Istio Gateway: its servers with the
// routes of the VirtualServices bound to it (`gateways:`), and TLS material from the
// Secrets named by credentialName. A problem here is a load error at the Gateway or
// VirtualService that has it.
func (l *loader) bindIstioGateways(mesh *model.Mesh, cat *istio.Catalog) {
	secrets := map[model.NamespacedName]*gatewayapi.Secret{}
	var gws []*istio.Gateway
	gwObj := map[*istio.Gateway]*object{}
	for _, o := range l.objects {
		if o.failed {
			continue
		}
		switch v := o.value.(type) {
		case *gatewayapi.Secret:
			secrets[model.NamespacedName{Namespace: v.Namespace, Name: v.Name}] = v
		case *istio.Gateway:
			v.Source = o.src
			gws = append(gws, v)
			gwObj[v] = o
		}
	}
	for _, g := range gws {
		mg, issues := bindIstioGateway(g, mesh, cat, secrets)
		l.report(gwObj[g], issues)
		if len(issues) == 0 {
			mesh.Gateways = append(mesh.Gateways, mg)
		}
	}
}

func bindIstioGateway(g *istio.Gateway, mesh *model.Mesh, cat *istio.Catalog, secrets map[model.NamespacedName]*gatewayapi.Secret) (*model.Gateway, []strict.Issue) {
	var issues []strict.Issue
	fail := func(path, format string, args ...any) {
		issues = append(issues, strict.Issue{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	ref := g.Namespace + "/" + g.Name
	out := &model.Gateway{NamespacedName: g.NamespacedName, Selector: g.Selector, Source: g.Source}
	for i, s := range g.Servers {
		path := strict.Index("spec.servers", i)
		name := s.Name
		if name == "" {
			name = strconv.Itoa(i)
		}
		l := model.GatewayListener{Name: name, Address: s.Bind, Port: s.Port}
		switch {
		case s.Protocol == "TCP":
			l.Protocol = model.GatewayTCP
		case s.Protocol == "TLS" && s.TLSMode == "PASSTHROUGH":
			l.Protocol = model.GatewayTLSProtocol
		case s.Protocol == "TLS":
			l.Protocol = model.GatewayTLSProtocol
		case s.TLSMode != "":
			l.Protocol = model.GatewayHTTPS
		default:
			l.Protocol = model.GatewayHTTP
		}
		for _, h := range s.Hosts {
			if _, host, ok := strings.Cut(h, "/"); ok {
				h = host
			}
			if h != "*" {
				l.Hostnames = append(l.Hostnames, h)
			}
		}
		if s.TLSMode != "" && s.TLSMode != "PASSTHROUGH" {
			t, msg := serverTLS(g.Namespace, s, secrets)
			if t == nil {
				fail(strict.Field(path, "tls.credentialName"), "%s", msg)
				continue
			}
			l.TLS = t
		}
		// The VirtualServices bound to this gateway whose hosts the server exports.
		for _, vs := range mesh.VirtualServices {
			if !bound(vs, ref) {
				continue
			}
			for hi, host := range vs.Hosts {
				served := serverServes(s.Hosts, g.Namespace, vs.Namespace, host)
				if served == "" {
					continue
				}
				switch l.Protocol {
				case model.GatewayHTTP, model.GatewayHTTPS:
					vh := model.GatewayVirtualHost{Hostname: served}
					for ri, r := range vs.HTTP {
						gr, ok := gatewayRouteOf(vs, r, s.Port, ref, cat)
						if !ok {
							continue
						}
						if gr.Name == "" {
							gr.Name = fmt.Sprintf("%s.%s/%d", vs.Name, vs.Namespace, ri)
						}
						vh.Routes = append(vh.Routes, gr)
					}
					if len(vh.Routes) > 0 {
						l.VirtualHosts = append(l.VirtualHosts, vh)
					}
				case model.GatewayTCP:
					for _, r := range vs.TCP {
						if (r.Port == 0 || r.Port == s.Port) && l.TCP == nil {
							l.TCP = resolvePorts(r.Destinations, cat)
						}
					}
				case model.GatewayTLSProtocol:
					if l.TLS != nil {
						for _, r := range vs.TCP {
							if (r.Port == 0 || r.Port == s.Port) && l.TCP == nil {
								l.TCP = resolvePorts(r.Destinations, cat)
							}
						}
						continue
					}
					if hi > 0 {
						continue // SNI routes are per VirtualService, not per host
					}
					for _, r := range vs.TLS {
						if r.Port == 0 || r.Port == s.Port {
							l.TLSRoutes = append(l.TLSRoutes, model.GatewaySNIRoute{Hostnames: r.SNIHosts, Destinations: resolvePorts(r.Destinations, cat), Owner: "VirtualService/" + vs.Namespace + "/" + vs.Name})
						}
					}
				}
			}
		}
		out.Listeners = append(out.Listeners, l)
	}
	return out, issues
}

// bound reports whether a VirtualService names the gateway ("ns/name").
func bound(vs *model.VirtualService, ref string) bool {
	for _, g := range vs.Gateways {
		if g == ref {
			return true
		}
	}
	return false
}

// serverServes returns the name under which a server exports a VirtualService host:
// server hosts are "host" or "ns/host" ("*" any namespace, "." the gateway's), and a
// wildcard on either side matches the other; "" when the server does not export it.
func serverServes(hosts []string, gwNS, vsNS, host string) string {
	for _, h := range hosts {
		ns, name, ok := strings.Cut(h, "/")
		if !ok {
			ns, name = "*", h
		}
		if ns == "." {
			ns = gwNS
		}
		if ns != "*" && ns != vsNS {
			continue
		}
		switch {
		case model.HostnameMatches(name, host):
			return host
		case strings.HasPrefix(host, "*") && model.HostnameMatches(host, name):
			return name
		}
	}
	return ""
}

// gatewayRouteOf is a VirtualService http rule as a gateway route: matches for another
// port or other gateways left out, destination ports resolved.
func gatewayRouteOf(vs *model.VirtualService, r model.HTTPRoute, port int, ref string, cat *istio.Catalog) (model.GatewayRoute, bool) {
	var matches []model.HTTPMatch
	for _, m := range r.Matches {
		if (m.Port == 0 || m.Port == port) && m.AppliesToGateway(ref) {
			matches = append(matches, m)
		}
	}
	if len(r.Matches) > 0 && len(matches) == 0 {
		return model.GatewayRoute{}, false
	}
	out := model.GatewayRoute{HTTPRoute: r, Owner: "VirtualService/" + vs.Namespace + "/" + vs.Name}
	out.Matches = matches
	out.Destinations = resolvePorts(r.Destinations, cat)
	for i, m := range out.Mirrors {
		if d := resolvePorts([]model.RouteDestination{m.Destination}, cat); len(d) == 1 {
			out.Mirrors[i].Destination = d[0]
		}
	}
	if len(out.Destinations) == 0 && r.Redirect == nil {
		out.InvalidWeight = 1
	}
	return out, true
}

// resolvePorts fills a destination's port from its Service when it has only one.
func resolvePorts(ds []model.RouteDestination, cat *istio.Catalog) []model.RouteDestination {
	out := make([]model.RouteDestination, 0, len(ds))
	for _, d := range ds {
		if d.Port == 0 {
			if svc := cat.Services[d.Host]; svc != nil && len(svc.Ports) == 1 {
				d.Port = svc.Ports[0].Port
			}
		}
		out = append(out, d)
	}
	return out
}

// serverTLS reads a server's certificate (and, for MUTUAL, client CA) from the Secret
// credentialName in the gateway's namespace, as Istio's gateways do: tls.crt/tls.key
// (or cert/key), the CA in ca.crt (or cacert), or in the Secret <name>-cacert.
func serverTLS(ns string, s istio.Server, secrets map[model.NamespacedName]*gatewayapi.Secret) (*model.GatewayTLS, string) {
	if s.TLSMode == "ISTIO_MUTUAL" {
		return &model.GatewayTLS{Mode: model.GatewayTLSIstioMutual}, ""
	}
	sec := secrets[model.NamespacedName{Namespace: ns, Name: s.Credential}]
	if sec == nil {
		return nil, fmt.Sprintf("Secret %s/%s not found", ns, s.Credential)
	}
	pick := func(m map[string][]byte, keys ...string) []byte {
		for _, k := range keys {
			if v := m[k]; len(v) > 0 {
				return v
			}
		}
		return nil
	}
	cert, key := pick(sec.Data, corev1.TLSCertKey, "cert"), pick(sec.Data, corev1.TLSPrivateKeyKey, "key")
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return nil, fmt.Sprintf("Secret %s/%s: no usable tls.crt and tls.key: %v", ns, s.Credential, err)
	}
	out := &model.GatewayTLS{Mode: model.GatewayTLSSimple, CertChain: string(cert), Key: string(key), Secret: ns + "/" + s.Credential}
	if s.TLSMode == "MUTUAL" {
		out.Mode = model.GatewayTLSMutual
		ca := pick(sec.Data, "ca.crt", "cacert")
		if ca == nil {
			if cs := secrets[model.NamespacedName{Namespace: ns, Name: s.Credential + "-cacert"}]; cs != nil {
				ca = pick(cs.Data, "ca.crt", "cacert")
			}
		}
		if ca == nil {
			return nil, fmt.Sprintf("MUTUAL needs a CA: ca.crt in Secret %s/%s or in %s-cacert", ns, s.Credential, s.Credential)
		}
		out.CACert = string(ca)
	}
	return out, ""
}
