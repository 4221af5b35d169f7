package istio

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// Istio's Gateway: servers (port, hosts, TLS) on the gateway proxies its selector picks
// (skein Workloads with role gateway). What a server routes comes from the
// VirtualServices bound to it with `gateways:`; the loader joins the two (BindGateways).

func init() {
	allowFields(
		"istio.networking.v1alpha3.Gateway.servers",
		"istio.networking.v1alpha3.Gateway.selector",
		"istio.networking.v1alpha3.Server.port",
		"istio.networking.v1alpha3.Server.hosts",
		"istio.networking.v1alpha3.Server.tls",
		"istio.networking.v1alpha3.Server.name",
		"istio.networking.v1alpha3.Server.bind",
		"istio.networking.v1alpha3.Port.number",
		"istio.networking.v1alpha3.Port.protocol",
		"istio.networking.v1alpha3.Port.name",
		"istio.networking.v1alpha3.Port.target_port",
		"istio.networking.v1alpha3.ServerTLSSettings.mode",
		"istio.networking.v1alpha3.ServerTLSSettings.credential_name",
		"istio.networking.v1alpha3.HTTPMatchRequest.gateways",
		// VirtualService tls routes: TLS passthrough by SNI on gateways.
		"istio.networking.v1alpha3.VirtualService.tls",
		"istio.networking.v1alpha3.TLSRoute.match",
		"istio.networking.v1alpha3.TLSRoute.route",
		"istio.networking.v1alpha3.TLSMatchAttributes.sni_hosts",
		"istio.networking.v1alpha3.TLSMatchAttributes.port",
	)
}

// Gateway is a checked Istio Gateway, waiting for the VirtualServices and Secrets it
// needs (BindGateways).
type Gateway struct {
	model.NamespacedName
	Selector map[string]string
	Servers  []Server
	Source   model.Source
}

// Server is one server of a Gateway.
type Server struct {
	Name     string
	Port     int
	Protocol string // upper case: HTTP, HTTPS, HTTP2, GRPC, TCP, TLS
	Bind     string
	// Hosts as written: "host" or "namespace/host" ("*/" and "./" too).
	Hosts      []string
	TLSMode    string // SIMPLE, MUTUAL, PASSTHROUGH, ISTIO_MUTUAL; "" without tls
	Credential string
}

// IstioGateway checks a Gateway spec.
func IstioGateway(nn model.NamespacedName, spec *networking.Gateway) (*Gateway, []strict.Issue) {
	var is issues
	out := &Gateway{NamespacedName: nn, Selector: spec.GetSelector()}
	if len(out.Selector) == 0 {
		is.add("spec.selector", "a selector is required: the labels of the gateway workload (a Workload with role: gateway)")
	}
	if len(spec.GetServers()) == 0 {
		is.add("spec.servers", "at least one server is required")
	}
	names := map[string]bool{}
	for i, s := range spec.GetServers() {
		path := strict.Index("spec.servers", i)
		srv := Server{Name: s.GetName(), Bind: s.GetBind(), Hosts: s.GetHosts()}
		if p := s.GetPort(); p == nil {
			is.add(strict.Field(path, "port"), "port is required")
		} else {
			srv.Port, srv.Protocol = int(p.GetNumber()), strings.ToUpper(p.GetProtocol())
			if p.GetNumber() < 1 || p.GetNumber() > 65535 {
				is.add(strict.Field(path, "port.number"), "port %d out of range [1, 65535]", p.GetNumber())
			}
			switch srv.Protocol {
			case "HTTP", "HTTPS", "HTTP2", "GRPC", "TCP", "TLS":
			default:
				is.add(strict.Field(path, "port.protocol"), "protocol %q: want HTTP, HTTPS, HTTP2, GRPC, TCP or TLS", p.GetProtocol())
			}
			if p.GetTargetPort() != 0 {
				is.add(strict.Field(path, "port.targetPort"), "targetPort is not supported by skein: the proxy listens on port.number")
			}
		}
		if srv.Name != "" {
			if names[srv.Name] {
				is.add(strict.Field(path, "name"), "server name %q is used twice", srv.Name)
			}
			names[srv.Name] = true
		}
		if len(srv.Hosts) == 0 {
			is.add(strict.Field(path, "hosts"), "at least one host is required")
		}
		for j, h := range srv.Hosts {
			ns, host, ok := strings.Cut(h, "/")
			if !ok {
				host, ns = h, ""
			}
			if host == "" || ok && ns == "" {
				is.add(strict.Index(strict.Field(path, "hosts"), j), "invalid host %q: want host or namespace/host", h)
			}
		}
		if t := s.GetTls(); t != nil {
			srv.TLSMode = t.GetMode().String()
			srv.Credential = t.GetCredentialName()
			tpath := strict.Field(path, "tls")
			switch srv.TLSMode {
			case "SIMPLE", "MUTUAL":
				if srv.Credential == "" {
					is.add(strict.Field(tpath, "credentialName"), "credentialName is required for mode %s (skein reads certificates from Secrets)", srv.TLSMode)
				}
			case "PASSTHROUGH":
				if srv.Protocol != "TLS" {
					is.add(strict.Field(tpath, "mode"), "PASSTHROUGH needs port.protocol TLS")
				}
			case "ISTIO_MUTUAL":
			default:
				is.add(strict.Field(tpath, "mode"), "mode %s is not supported by skein", srv.TLSMode)
			}
		} else if srv.Protocol == "HTTPS" || srv.Protocol == "TLS" {
			is.add(strict.Field(path, "tls"), "tls is required for protocol %s", srv.Protocol)
		}
		out.Servers = append(out.Servers, srv)
	}
	return out, is
}

// GatewayRef resolves a VirtualService's gateways entry ("name" in its own namespace,
// "ns/name", or the reserved "mesh") to "ns/name" or "mesh".
func GatewayRef(ref, vsNamespace string) string {
	if ref == "mesh" || strings.Contains(ref, "/") {
		return ref
	}
	if name, ns, ok := strings.Cut(ref, "."); ok { // Istio also accepts name.namespace
		return ns + "/" + name
	}
	return vsNamespace + "/" + ref
}
