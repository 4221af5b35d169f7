package resource

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A throwaway self-signed certificate and key.
const testCertPEM = `-----BEGIN CERTIFICATE-----
MIIBrzCCAVWgAwIBAgIUHFP4F2mhaZNkYDtWi+46RmBJpz0wCgYIKoZIzj0EAwIw
LDEOMAwGA1UECgwFc2tlaW4xGjAYBgNVBAMMEXNrZWluIGdvbGRlbiByb290MCAX
DTI2MTEyNjE3MDk0MFoYDzIxMjYxMTAyMTcwOTQwWjAsMQ4wDAYDVQQKDAVza2Vp
bjEaMBgGA1UEAwwRc2tlaW4gZ29sZGVuIHJvb3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQSdeoRs0uJoajuqxuTUYyfQqH7qHTCjtUUialubtixQWs0Hh4xqSIL
1gvDFmTF75i+hiOJ7+nRFijS6A9tDGv/o1MwUTAdBgNVHQ4EFgQUy94Kh6/kOsYR
OfEIlYIZQWHw3A0wHwYDVR0jBBgwFoAUy94Kh6/kOsYROfEIlYIZQWHw3A0wDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAGja1tnzR9B2Bfp0kjPun2
U7QyQgpVbhf3FezMZCKAfQIhAIuIo19aypbJgQOiMjJWdcopoIzgy3OOA7C4Wc6i
LUhV
-----END CERTIFICATE-----
`

const testKeyPEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8cWc6NwHc0ENsjUE
LPqA9EZZ4A0FYV/hGm/VHM4neg6hRANCAAQSdeoRs0uJoajuqxuTUYyfQqH7qHTC
jtUUialubtixQWs0Hh4xqSIL1gvDFmTF75i+hiOJ7+nRFijS6A9tDGv/
-----END PRIVATE KEY-----
`

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3}
}

func meshUpstream() *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{
		Sni: "outbound_.8080_._.web.default.svc.cluster.local",
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3, TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_3},
			AlpnProtocols:                  []string{"h2"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default", SdsConfig: ads()}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_URI,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "spiffe://cluster.local/ns/default/sa/web"}},
				}}},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA", SdsConfig: ads()},
			}},
		},
	}
}

func socket(t testing.TB, name string, m proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: name, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, m)}}
}

func tlsCluster(t testing.TB) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 "outbound|8080||web.default.svc.cluster.local",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()},
		ConnectTimeout:       durationpb.New(1e9),
		TransportSocketMatches: []*clusterv3.Cluster_TransportSocketMatch{
			{Name: "tlsMode-istio", Match: &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}}, TransportSocket: socket(t, "envoy.transport_sockets.tls", meshUpstream())},
			{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: socket(t, "envoy.transport_sockets.raw_buffer", &rawbufferv3.RawBuffer{})},
		},
	}
}

func TestDecodeMeshTLS(t *testing.T) {
	d := NewDecoder()
	c, err := d.Cluster(mustAny(t, tlsCluster(t)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"default", "ROOTCA"}, c.Resource.SecretNames()); diff != "" {
		t.Errorf("secret names (-want +got):\n%s", diff)
	}
	withSidecar := Endpoint{SocketMatch: map[string]string{"tlsMode": "istio"}}
	up := c.Resource.TLSFor(withSidecar)
	if up == nil || up.SNI != "outbound_.8080_._.web.default.svc.cluster.local" || up.MinVersion != tls.VersionTLS13 ||
		up.CertSecret != "default" || up.Validation.RootsSecret != "ROOTCA" || len(up.Validation.SANs) != 1 ||
		!up.Validation.SANs[0].Matcher.Match("spiffe://cluster.local/ns/default/sa/web") {
		t.Errorf("mTLS socket for a sidecar endpoint decoded as %+v", up)
	}
	if got := c.Resource.TLSFor(Endpoint{}); got != nil {
		t.Errorf("endpoint without a sidecar got TLS %+v, want plaintext", got)
	}

	eds := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1}}}}}},
		Metadata:       &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.transport_socket_match": {Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}}}},
	}}}}}
	e, err := d.Endpoints(mustAny(t, eds))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Resource.Endpoints[0].SocketMatch["tlsMode"]; got != "istio" {
		t.Errorf("endpoint tlsMode = %q", got)
	}

	secret := &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte(testCertPEM)}},
	}}}
	s, err := d.Secret(mustAny(t, secret))
	if err != nil || len(s.Resource.RootCerts) != 1 {
		t.Fatalf("ROOTCA: %v %+v", err, s.Resource)
	}
}

func TestDecodeTLSErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, []byte(testCertPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(testKeyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	file := func(p string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p}}
	}
	withUpstream := func(mutate func(*tlsv3.UpstreamTlsContext)) func(testing.TB) proto.Message {
		return func(t testing.TB) proto.Message {
			u := meshUpstream()
			mutate(u)
			c := tlsCluster(t)
			c.TransportSocketMatches = nil
			c.TransportSocket = socket(t, "envoy.transport_sockets.tls", u)
			return c
		}
	}
	tests := []struct {
		name    string
		msg     func(testing.TB) proto.Message
		wantErr string // "" means valid
	}{
		{name: "mesh mTLS cluster", msg: func(t testing.TB) proto.Message { return tlsCluster(t) }},
		{name: "files (MUTUAL)", msg: withUpstream(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.TlsCertificateSdsSecretConfigs = nil
			u.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{CertificateChain: file(certFile), PrivateKey: file(keyFile)}}
			u.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: file(certFile)}}
		})},
		{name: "missing file", msg: withUpstream(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: file(filepath.Join(dir, "nope.pem"))}}
		}), wantErr: "trusted_ca.filename: open"},
		{name: "relative file", msg: withUpstream(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: file("ca.pem")}}
		}), wantErr: `filename "ca.pem" must be absolute`},
		{name: "key is not a certificate", msg: withUpstream(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: file(keyFile)}}
		}), wantErr: `unexpected PEM block "PRIVATE KEY"`},
		{name: "SANs without trust anchor", msg: withUpstream(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "a"}}}}}}
		}), wantErr: "insecure and not allowed"},
		{name: "EMAIL SAN", msg: withUpstream(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.GetCombinedValidationContext().DefaultValidationContext.MatchTypedSubjectAltNames[0].SanType = tlsv3.SubjectAltNameMatcher_EMAIL
		}), wantErr: "san_type EMAIL unsupported"},
		{name: "TLS 1.0", msg: withUpstream(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.TlsParams.TlsMinimumProtocolVersion = tlsv3.TlsParameters_TLSv1_0
		}), wantErr: "tls_minimum_protocol_version TLSv1_0 unsupported"},
		{name: "cipher suites", msg: withUpstream(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.TlsParams.CipherSuites = []string{"ECDHE-ECDSA-AES128-GCM-SHA256"}
		}), wantErr: "unsupported field envoy.extensions.transport_sockets.tls.v3.TlsParameters.cipher_suites"},
		{name: "sds from a cluster", msg: withUpstream(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.TlsCertificateSdsSecretConfigs[0].SdsConfig = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/x"}}
		}), wantErr: "unsupported field envoy.config.core.v3.ConfigSource.path"},
		{name: "non-string match", msg: func(t testing.TB) proto.Message {
			c := tlsCluster(t)
			c.TransportSocketMatches[0].Match.Fields["tlsMode"] = structpb.NewBoolValue(true)
			return c
		}, wantErr: "unsupported field google.protobuf.Value.bool_value"},
		{name: "downstream without certificate", msg: func(t testing.TB) proto.Message {
			l := validListener(t)
			l.FilterChains[0].TransportSocket = socket(t, "tls", &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{}})
			return l
		}, wantErr: "a server certificate"},
		{name: "require client cert without validation", msg: func(t testing.TB) proto.Message {
			l := validListener(t)
			l.FilterChains[0].TransportSocket = socket(t, "tls", &tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true),
				CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default", SdsConfig: ads()}}}})
			return l
		}, wantErr: "require_client_certificate needs a validation context"},
		{name: "permissive chains", msg: func(t testing.TB) proto.Message {
			l := validListener(t)
			mtls := proto.Clone(l.FilterChains[0]).(*listenerv3.FilterChain)
			mtls.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
			mtls.TransportSocket = socket(t, "tls", &tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true),
				CommonTlsContext: meshUpstream().CommonTlsContext})
			l.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}
			l.FilterChains = append(l.FilterChains, mtls)
			l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &tlsinspectorv3.TlsInspector{})}}}
			return l
		}},
		{name: "chains with different filters (each chain has its own)", msg: func(t testing.TB) proto.Message {
			l := validListener(t)
			other := proto.Clone(l.FilterChains[0]).(*listenerv3.FilterChain)
			other.Filters[0].Name = "other"
			other.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
			l.FilterChains = append(l.FilterChains, other)
			return l
		}},
		{name: "sni match", msg: func(t testing.TB) proto.Message {
			l := validListener(t)
			l.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"a"}}
			return l
		}}, // server_names matching is implemented (filterchain)
		{name: "secret with a private key", msg: func(t testing.TB) proto.Message {
			return &tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{}}}
		}, wantErr: "unsupported field envoy.extensions.transport_sockets.tls.v3.Secret.tls_certificate"},
		{name: "secret with garbage", msg: func(t testing.TB) proto.Message {
			return &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "not pem"}}}}}
		}, wantErr: "data after the PEM blocks"},
	}
	d := NewDecoder()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			switch m := tc.msg(t).(type) {
			case *clusterv3.Cluster:
				_, err = d.Cluster(mustAny(t, m))
			case *listenerv3.Listener:
				_, err = d.Listener(mustAny(t, m))
			case *tlsv3.Secret:
				_, err = d.Secret(mustAny(t, m))
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzTLSResources(f *testing.F) {
	for _, m := range []proto.Message{
		tlsCluster(f),
		&tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte(testCertPEM)}}}}},
		meshUpstream(),
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	d := NewDecoderWith(DecoderOptions{ReadFile: func(string) ([]byte, error) { return []byte(testCertPEM), nil }})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = d.Secret(&anypb.Any{TypeUrl: SecretType, Value: b})
		_, _ = d.Cluster(&anypb.Any{TypeUrl: ClusterType, Value: b})
		_, _ = d.Listener(&anypb.Any{TypeUrl: ListenerType, Value: b})
		// The same bytes as a TLS context inside a cluster.
		c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}, EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()},
			TransportSocket: &corev3.TransportSocket{Name: "tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: &anypb.Any{
				TypeUrl: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", Value: b}}}}
		if a, err := anypb.New(c); err == nil {
			_, _ = d.Cluster(a)
		}
	})
}
