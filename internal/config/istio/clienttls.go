package istio

import (
	"path/filepath"

	"google.golang.org/protobuf/reflect/protoreflect"
	networking "istio.io/api/networking/v1alpha3"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// clientTLSFields are the DestinationRule TLS origination fields skein implements
// (trafficPolicy.tls and portLevelSettings[].tls). credentialName (Kubernetes
// secrets) and caCrl are not supported yet.
var clientTLSFields = map[protoreflect.FullName]bool{
	"istio.networking.v1alpha3.TrafficPolicy.tls":                    true,
	"istio.networking.v1alpha3.TrafficPolicy.port_level_settings":    true,
	"istio.networking.v1alpha3.TrafficPolicy.PortTrafficPolicy.port": true,
	"istio.networking.v1alpha3.TrafficPolicy.PortTrafficPolicy.tls":  true,
	"istio.networking.v1alpha3.ClientTLSSettings.mode":               true,
	"istio.networking.v1alpha3.ClientTLSSettings.client_certificate": true,
	"istio.networking.v1alpha3.ClientTLSSettings.private_key":        true,
	"istio.networking.v1alpha3.ClientTLSSettings.ca_certificates":    true,
	"istio.networking.v1alpha3.ClientTLSSettings.subject_alt_names":  true,
	"istio.networking.v1alpha3.ClientTLSSettings.sni":                true,
}

// clientTLS translates trafficPolicy.tls with Istio's validation: ISTIO_MUTUAL takes
// no certificates (the mesh provides them), MUTUAL needs a client certificate and key.
// File paths must be absolute: the proxy reads them.
func clientTLS(t *networking.ClientTLSSettings, path string, is *issues) *model.ClientTLS {
	if t == nil {
		return nil
	}
	out := &model.ClientTLS{
		CACertificates:    t.GetCaCertificates(),
		ClientCertificate: t.GetClientCertificate(),
		PrivateKey:        t.GetPrivateKey(),
		SNI:               t.GetSni(),
		SubjectAltNames:   t.GetSubjectAltNames(),
	}
	switch t.GetMode() {
	case networking.ClientTLSSettings_DISABLE:
		out.Mode = model.TLSDisable
	case networking.ClientTLSSettings_SIMPLE:
		out.Mode = model.TLSSimple
	case networking.ClientTLSSettings_MUTUAL:
		out.Mode = model.TLSMutual
		if out.ClientCertificate == "" {
			is.add(strict.Field(path, "clientCertificate"), "clientCertificate is required when mode is MUTUAL")
		}
		if out.PrivateKey == "" {
			is.add(strict.Field(path, "privateKey"), "privateKey is required when mode is MUTUAL")
		}
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		out.Mode = model.TLSIstioMutual
		for _, f := range []struct{ name, value string }{
			{"clientCertificate", out.ClientCertificate}, {"privateKey", out.PrivateKey}, {"caCertificates", out.CACertificates},
		} {
			if f.value != "" {
				is.add(strict.Field(path, f.name), "%s cannot be set when mode is ISTIO_MUTUAL: the mesh provides the certificates", f.name)
			}
		}
	}
	for _, f := range []struct{ name, value string }{
		{"clientCertificate", out.ClientCertificate}, {"privateKey", out.PrivateKey}, {"caCertificates", out.CACertificates},
	} {
		if f.value != "" && !filepath.IsAbs(f.value) {
			is.add(strict.Field(path, f.name), "%q must be an absolute path (the proxy reads the file)", f.value)
		}
	}
	return out
}

// portLevelReferences checks that portLevelSettings name ports of the rule's Service.
func portLevelReferences(spec *networking.DestinationRule, svc *model.Service, is *issues) {
	check := func(tp *networking.TrafficPolicy, path string) {
		for i, pl := range tp.GetPortLevelSettings() {
			if n := pl.GetPort().GetNumber(); n != 0 {
				if _, ok := svc.Port(int(n)); !ok {
					is.add(strict.Field(strict.Index(strict.Field(path, "portLevelSettings"), i), "port.number"),
						"port %d is not a port of Service %s/%s (ports: %s)", n, svc.Namespace, svc.Name, portList(svc))
				}
			}
		}
	}
	check(spec.GetTrafficPolicy(), "spec.trafficPolicy")
	for i, s := range spec.GetSubsets() {
		check(s.GetTrafficPolicy(), strict.Field(strict.Index("spec.subsets", i), "trafficPolicy"))
	}
}
