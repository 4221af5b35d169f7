package translate

import (
	"net"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rawbuffer "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"skein.dev/skein/internal/model"
)

// Mesh mTLS, as Istio wires it (docs/XDS.md, "Security"):
//   - The trust bundle is the SDS secret ROOTCA, served over ADS. The workload
//     certificate is the secret "default": the skein proxy obtains it itself with a CSR
//     (its key never leaves it), so the control plane never serves it.
//   - Outbound clusters: auto-mTLS through transport_socket_matches (endpoints whose
//     metadata says tlsMode=istio get mTLS, others plaintext), or what a DestinationRule's
//     trafficPolicy.tls says (ISTIO_MUTUAL, SIMPLE, MUTUAL, DISABLE).
//   - Inbound listeners follow the workload port's PeerAuthentication mode: STRICT
//     accepts only mTLS, PERMISSIVE mTLS and plaintext on the same port (tls_inspector,
//     filter chains matched on transport_protocol), DISABLE plaintext only.

// Secret and socket names shared with the proxy.
const (
	SecretRootCA         = "ROOTCA"
	SecretDefault        = "default"
	TransportTLS         = "envoy.transport_sockets.tls"
	TransportRaw         = "envoy.transport_sockets.raw_buffer"
	ListenerTLSInspector = "envoy.filters.listener.tls_inspector"
	// TransportSocketMatchKey is the endpoint filter_metadata key Envoy matches
	// transport_socket_matches against.
	TransportSocketMatchKey = "envoy.transport_socket_match"
	tlsModeKey              = "tlsMode"
	tlsModeIstio            = "istio"
)

// ALPN protocol IDs.
var (
	alpnH2    = []string{"h2"}
	alpnHTTP1 = []string{"http/1.1"}
	alpnHTTP  = []string{"h2", "http/1.1"}
)

// secure reports whether mesh mTLS is configured for this proxy: a CA exists and the
// node is a skein sidecar (generic clients cannot hold the "default" certificate).
func (b *builder) secure() bool { return b.mesh.Security != nil && b.proxy != nil }

// secrets returns the SDS secrets of a sidecar: the trust bundle.
func (b *builder) secrets() []types.Resource {
	if !b.secure() {
		return nil
	}
	return []types.Resource{&tlsv3.Secret{
		Name: SecretRootCA,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: []byte(b.mesh.Security.RootCertsPEM)}},
		}},
	}}
}

// OutboundSNI is the SNI of mesh mTLS towards a service port and subset (Istio's
// BuildDNSSrvSubsetKey): outbound_.8080_.v1_.catalog.default.svc.cluster.local.
func OutboundSNI(port int, subset, host string) string {
	return "outbound_." + itoa(port) + "_." + subset + "_." + host
}

// applyUpstreamTLS sets the transport socket(s) of an outbound cluster.
func (b *builder) applyUpstreamTLS(c *cluster.Cluster, sp servicePort, subset string) {
	if !b.secure() {
		return
	}
	setting := b.mesh.DestinationRuleFor(sp.host).ClientTLSFor(subset, sp.port.Port)
	if setting == nil {
		// Auto-mTLS: mTLS to endpoints that have a sidecar, plaintext to the others.
		c.TransportSocketMatches = []*cluster.Cluster_TransportSocketMatch{
			{
				Name:            "tlsMode-istio",
				Match:           &structpb.Struct{Fields: map[string]*structpb.Value{tlsModeKey: structpb.NewStringValue(tlsModeIstio)}},
				TransportSocket: b.tlsSocket(b.istioMutual(sp, subset, nil)),
			},
			{
				Name:            "tlsMode-disabled",
				Match:           &structpb.Struct{},
				TransportSocket: b.rawSocket(),
			},
		}
		return
	}
	switch setting.Mode {
	case model.TLSIstioMutual:
		c.TransportSocket = b.tlsSocket(b.istioMutual(sp, subset, setting))
	case model.TLSSimple, model.TLSMutual:
		c.TransportSocket = b.tlsSocket(b.originateTLS(sp, setting))
	}
}

// istioMutual is the UpstreamTlsContext of mesh mTLS: the proxy's own certificate, the
// ROOTCA bundle, and the destination service's identities as the accepted SANs.
func (b *builder) istioMutual(sp servicePort, subset string, setting *model.ClientTLS) *tlsv3.UpstreamTlsContext {
	sni := OutboundSNI(sp.port.Port, subset, sp.host)
	sans := b.mesh.ServiceAccounts(sp.svc)
	if setting != nil {
		if setting.SNI != "" {
			sni = setting.SNI
		}
		if len(setting.SubjectAltNames) > 0 {
			sans = setting.SubjectAltNames
		}
	}
	var matchers []*tlsv3.SubjectAltNameMatcher
	for _, id := range sans {
		matchers = append(matchers, sanMatcher(tlsv3.SubjectAltNameMatcher_URI, id))
	}
	return &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      tls13(),
			AlpnProtocols:                  upstreamALPN(sp.port.Protocol),
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: SecretDefault, SdsConfig: adsConfigSource()}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: matchers},
					ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SecretRootCA, SdsConfig: adsConfigSource()},
				},
			},
		},
	}
}

// originateTLS is a DestinationRule SIMPLE or MUTUAL origination with files the proxy
// reads. Without caCertificates the system roots verify the server. The server
// certificate must carry one of subjectAltNames, else the SNI when set.
func (b *builder) originateTLS(sp servicePort, s *model.ClientTLS) *tlsv3.UpstreamTlsContext {
	vc := &tlsv3.CertificateValidationContext{}
	if s.CACertificates != "" {
		vc.TrustedCa = fileSource(s.CACertificates)
	} else {
		vc.SystemRootCerts = &tlsv3.CertificateValidationContext_SystemRootCerts{}
	}
	sans := s.SubjectAltNames
	if len(sans) == 0 && s.SNI != "" {
		sans = []string{s.SNI}
	}
	for _, san := range sans {
		switch {
		case strings.Contains(san, "://"):
			vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, sanMatcher(tlsv3.SubjectAltNameMatcher_URI, san))
		case net.ParseIP(san) != nil:
			vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, sanMatcher(tlsv3.SubjectAltNameMatcher_IP_ADDRESS, san))
		default:
			vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, sanMatcher(tlsv3.SubjectAltNameMatcher_DNS, san))
		}
	}
	common := &tlsv3.CommonTlsContext{
		AlpnProtocols:         upstreamALPN(sp.port.Protocol),
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
	}
	if s.Mode == model.TLSMutual {
		common.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: fileSource(s.ClientCertificate),
			PrivateKey:       fileSource(s.PrivateKey),
		}}
	}
	return &tlsv3.UpstreamTlsContext{Sni: s.SNI, CommonTlsContext: common}
}

func upstreamALPN(p model.Protocol) []string {
	switch {
	case p.IsHTTP2():
		return alpnH2
	case p.IsHTTP():
		return alpnHTTP1
	}
	return nil
}

func tls13() *tlsv3.TlsParameters {
	return &tlsv3.TlsParameters{
		TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
		TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
	}
}

func sanMatcher(t tlsv3.SubjectAltNameMatcher_SanType, exact string) *tlsv3.SubjectAltNameMatcher {
	return &tlsv3.SubjectAltNameMatcher{
		SanType: t,
		Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: exact}},
	}
}

func fileSource(path string) *core.DataSource {
	return &core.DataSource{Specifier: &core.DataSource_Filename{Filename: path}}
}

func (b *builder) tlsSocket(ctx proto.Message) *core.TransportSocket {
	return &core.TransportSocket{Name: TransportTLS, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: b.toAny(ctx)}}
}

func (b *builder) rawSocket() *core.TransportSocket {
	return &core.TransportSocket{Name: TransportRaw, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: b.toAny(&rawbuffer.RawBuffer{})}}
}

// inboundMode is the PeerAuthentication mode of one of the proxy's container ports.
func (b *builder) inboundMode(containerPort int) model.MTLSMode {
	labels := b.proxy.Labels
	if w := b.workloads[b.proxy.Workload]; w != nil && len(labels) == 0 {
		labels = w.Labels
	}
	return b.mesh.EffectivePeerAuthentication(b.proxy.Workload.Namespace, labels, containerPort)
}

// secureInbound applies the port's PeerAuthentication mode to an inbound listener
// built with one plaintext filter chain.
func (b *builder) secureInbound(l *listener.Listener, containerPort int, http bool) {
	if !b.secure() {
		return
	}
	mode := b.inboundMode(containerPort)
	if mode == model.MTLSDisable {
		return
	}
	plain := l.FilterChains[0]
	mtls := b.mtlsChain("mtls", &listener.FilterChainMatch{}, plain.Filters, http)
	l.ListenerFilters = []*listener.ListenerFilter{{
		Name:       ListenerTLSInspector,
		ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: b.toAny(&tlsinspector.TlsInspector{})},
	}}
	// A client that sends nothing (a server-first protocol) is plaintext after the
	// detection timeout: served under PERMISSIVE, refused under STRICT.
	l.ListenerFiltersTimeout = durationpb.New(b.mesh.DetectionTimeout())
	l.ContinueOnListenerFiltersTimeout = true
	if mode == model.MTLSStrict {
		l.FilterChains = []*listener.FilterChain{mtls}
		return
	}
	plain.Name = "plaintext"
	plain.FilterChainMatch = &listener.FilterChainMatch{TransportProtocol: "raw_buffer"}
	l.FilterChains = []*listener.FilterChain{mtls, plain}
}

// mtlsChain is an inbound filter chain that terminates mesh mTLS (the workload's
// certificate, peers verified against the trust bundle) in front of filters; match gets
// transport_protocol "tls".
func (b *builder) mtlsChain(name string, match *listener.FilterChainMatch, filters []*listener.Filter, http bool) *listener.FilterChain {
	alpn := []string(nil)
	if http {
		alpn = alpnHTTP
	}
	ctx := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      tls13(),
			AlpnProtocols:                  alpn,
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: SecretDefault, SdsConfig: adsConfigSource()}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{},
					ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SecretRootCA, SdsConfig: adsConfigSource()},
				},
			},
		},
	}
	m := proto.Clone(match).(*listener.FilterChainMatch)
	m.TransportProtocol = "tls"
	return &listener.FilterChain{Name: name, FilterChainMatch: m, Filters: filters, TransportSocket: b.tlsSocket(ctx)}
}

// forwardClientCert makes an inbound HTTP connection manager add the caller's
// identity in x-forwarded-client-cert, as Istio's sidecars do.
func (b *builder) forwardClientCert(m *hcm.HttpConnectionManager) {
	if !b.secure() {
		return
	}
	m.ForwardClientCertDetails = hcm.HttpConnectionManager_APPEND_FORWARD
	m.SetCurrentClientCertDetails = &hcm.HttpConnectionManager_SetCurrentClientCertDetails{
		Subject: wrapperspb.Bool(true),
		Dns:     true,
		Uri:     true,
	}
}

// endpointMetadata marks an endpoint that terminates mesh mTLS (a sidecar whose port
// is not DISABLEd by PeerAuthentication), for auto-mTLS.
func (b *builder) endpointMetadata(e model.Endpoint) *core.Metadata {
	if !b.secure() || !e.Sidecar {
		return nil
	}
	if b.mesh.EffectivePeerAuthentication(e.Workload.Namespace, e.Labels, e.TargetPort) == model.MTLSDisable {
		return nil
	}
	return &core.Metadata{FilterMetadata: map[string]*structpb.Struct{
		TransportSocketMatchKey: {Fields: map[string]*structpb.Value{tlsModeKey: structpb.NewStringValue(tlsModeIstio)}},
	}}
}
