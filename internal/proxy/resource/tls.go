package resource

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs of transport sockets and listener filters the proxy accepts.
const (
	upstreamTLSTypeURL   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	downstreamTLSTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	rawBufferTypeURL     = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
	tlsInspectorTypeURL  = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
)

// Well-known transport protocol names of FilterChainMatch.transport_protocol.
const (
	TransportTLS       = "tls"
	TransportRawBuffer = "raw_buffer"
)

// TLSCommon is the part of an UpstreamTlsContext or DownstreamTlsContext the proxy
// uses: its own certificate, how it verifies the peer, ALPN and versions.
type TLSCommon struct {
	// CertSecret names the SDS secret holding this side's certificate; "default" is
	// the proxy's own workload identity. Empty when Cert is inline (files) or none.
	CertSecret string
	// Cert is an inline certificate (tls_certificates, from files), nil if none.
	Cert *tls.Certificate
	// Validation says how the peer is verified; nil means it is not (Envoy semantics
	// of a context without validation).
	Validation *Validation
	ALPN       []string
	// MinVersion and MaxVersion are crypto/tls versions; zero means the default
	// (TLS 1.2 minimum, TLS 1.3 maximum, as Envoy).
	MinVersion, MaxVersion uint16
}

// Validation is a CertificateValidationContext, possibly combined with an SDS one.
type Validation struct {
	// RootsSecret names the SDS secret whose trusted_ca verifies the peer (ROOTCA).
	RootsSecret string
	// Roots are inline or file trusted_ca certificates.
	Roots *x509.CertPool
	// SystemRoots: verify with the host's roots (system_root_certs).
	SystemRoots bool
	// SANs: the peer certificate must carry one of these; empty accepts any.
	SANs []SANMatcher
}

// SANType is the kind of subject alternative name a matcher compares.
type SANType int

const (
	SANURI SANType = iota
	SANDNS
	SANIP
)

// SANMatcher matches one kind of SAN with a string matcher.
type SANMatcher struct {
	Type    SANType
	Matcher StringMatcher
}

// StringMatcher is an envoy.type.matcher.v3.StringMatcher.
type StringMatcher struct {
	Kind       StringKind
	Value      string // lower-cased when IgnoreCase
	Regex      *regexp.Regexp
	IgnoreCase bool
}

// UpstreamTLS is a cluster's TLS origination.
type UpstreamTLS struct {
	TLSCommon
	SNI string
}

// DownstreamTLS is a listener filter chain's TLS termination.
type DownstreamTLS struct {
	TLSCommon
	RequireClientCert bool
}

// TransportSocketMatch picks a transport socket for endpoints whose metadata under
// envoy.transport_socket_match holds every key/value of Match (empty matches all).
type TransportSocketMatch struct {
	Name  string
	Match map[string]string
	TLS   *UpstreamTLS // nil: raw_buffer (plaintext)
}

// Secret is an accepted SDS resource: a validation context (trust bundle).
type Secret struct {
	Name  string
	Roots *x509.CertPool
	// RootsPEM is the bundle as received, for tools.
	RootsPEM []byte
	// RootCerts are the parsed roots, for go-spiffe bundles.
	RootCerts []*x509.Certificate
}

// SecretNames lists the SDS secrets a context references.
func (c *TLSCommon) SecretNames() []string {
	var out []string
	if c == nil {
		return nil
	}
	if c.CertSecret != "" {
		out = append(out, c.CertSecret)
	}
	if c.Validation != nil && c.Validation.RootsSecret != "" {
		out = append(out, c.Validation.RootsSecret)
	}
	return out
}

// DecoderOptions tune a Decoder.
type DecoderOptions struct {
	// ReadFile reads the files DataSource.filename names (certificates, keys, CA
	// bundles); os.ReadFile when nil. Files are read when the resource is accepted, so
	// a missing or broken file is a NACK, as in Envoy.
	ReadFile func(path string) ([]byte, error)
}

// transportSocket decodes a TransportSocket: nil for raw_buffer, else an UpstreamTLS or
// DownstreamTLS depending on want.
func (d *Decoder) upstreamSocket(ts *corev3.TransportSocket, field string) (*UpstreamTLS, error) {
	if ts == nil {
		return nil, nil
	}
	tc := ts.GetTypedConfig()
	switch tc.GetTypeUrl() {
	case rawBufferTypeURL:
		return nil, tc.UnmarshalTo(&rawbufferv3.RawBuffer{})
	case upstreamTLSTypeURL:
		pb := &tlsv3.UpstreamTlsContext{}
		if err := tc.UnmarshalTo(pb); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		common, err := d.commonTLS(pb.GetCommonTlsContext(), field+".common_tls_context")
		if err != nil {
			return nil, err
		}
		return &UpstreamTLS{TLSCommon: *common, SNI: pb.GetSni()}, nil
	}
	return nil, fmt.Errorf("%s.typed_config: unsupported type %q (want UpstreamTlsContext or RawBuffer)", field, tc.GetTypeUrl())
}

func (d *Decoder) downstreamSocket(ts *corev3.TransportSocket, field string) (*DownstreamTLS, error) {
	if ts == nil {
		return nil, nil
	}
	tc := ts.GetTypedConfig()
	switch tc.GetTypeUrl() {
	case rawBufferTypeURL:
		return nil, tc.UnmarshalTo(&rawbufferv3.RawBuffer{})
	case downstreamTLSTypeURL:
		pb := &tlsv3.DownstreamTlsContext{}
		if err := tc.UnmarshalTo(pb); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		common, err := d.commonTLS(pb.GetCommonTlsContext(), field+".common_tls_context")
		if err != nil {
			return nil, err
		}
		if common.CertSecret == "" && common.Cert == nil {
			return nil, fmt.Errorf("%s.common_tls_context: a server certificate (tls_certificate_sds_secret_configs or tls_certificates) is required", field)
		}
		out := &DownstreamTLS{TLSCommon: *common, RequireClientCert: pb.GetRequireClientCertificate().GetValue()}
		if out.RequireClientCert && out.Validation == nil {
			return nil, fmt.Errorf("%s: require_client_certificate needs a validation context", field)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s.typed_config: unsupported type %q (want DownstreamTlsContext or RawBuffer)", field, tc.GetTypeUrl())
}

func (d *Decoder) commonTLS(pb *tlsv3.CommonTlsContext, field string) (*TLSCommon, error) {
	c := &TLSCommon{ALPN: pb.GetAlpnProtocols()}
	for i, p := range c.ALPN {
		if p == "" || len(p) > 255 {
			return nil, fmt.Errorf("%s.alpn_protocols[%d]: invalid protocol %q", field, i, p)
		}
	}
	var err error
	if c.MinVersion, err = tlsVersion(pb.GetTlsParams().GetTlsMinimumProtocolVersion(), field+".tls_params.tls_minimum_protocol_version"); err != nil {
		return nil, err
	}
	if c.MaxVersion, err = tlsVersion(pb.GetTlsParams().GetTlsMaximumProtocolVersion(), field+".tls_params.tls_maximum_protocol_version"); err != nil {
		return nil, err
	}
	if c.MinVersion != 0 && c.MaxVersion != 0 && c.MinVersion > c.MaxVersion {
		return nil, fmt.Errorf("%s.tls_params: minimum version above maximum", field)
	}
	sds := pb.GetTlsCertificateSdsSecretConfigs()
	certs := pb.GetTlsCertificates()
	switch {
	case len(sds)+len(certs) > 1:
		return nil, fmt.Errorf("%s: at most one certificate (tls_certificates or tls_certificate_sds_secret_configs) is supported", field)
	case len(sds) == 1:
		if sds[0].GetName() == "" {
			return nil, fmt.Errorf("%s.tls_certificate_sds_secret_configs[0].name: %w", field, errMissing)
		}
		if err := checkADS(sds[0].GetSdsConfig(), field+".tls_certificate_sds_secret_configs[0].sds_config"); err != nil {
			return nil, err
		}
		c.CertSecret = sds[0].GetName()
	case len(certs) == 1:
		chain, err := d.dataSource(certs[0].GetCertificateChain(), field+".tls_certificates[0].certificate_chain")
		if err != nil {
			return nil, err
		}
		key, err := d.dataSource(certs[0].GetPrivateKey(), field+".tls_certificates[0].private_key")
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return nil, fmt.Errorf("%s.tls_certificates[0]: %w", field, err)
		}
		c.Cert = &cert
	}
	switch v := pb.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		c.Validation, err = d.validationContext(v.ValidationContext, field+".validation_context")
		if err == nil && len(c.Validation.SANs) > 0 && c.Validation.Roots == nil && !c.Validation.SystemRoots {
			err = fmt.Errorf("%s.validation_context: matching subject alt names without trusted_ca or system_root_certs is insecure and not allowed (as in Envoy)", field)
		}
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		c.Validation, err = d.sdsValidation(v.ValidationContextSdsSecretConfig, field+".validation_context_sds_secret_config")
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		cv := v.CombinedValidationContext
		path := field + ".combined_validation_context"
		if c.Validation, err = d.sdsValidation(cv.GetValidationContextSdsSecretConfig(), path+".validation_context_sds_secret_config"); err != nil {
			return nil, err
		}
		def, err := d.validationContext(cv.GetDefaultValidationContext(), path+".default_validation_context")
		if err != nil {
			return nil, err
		}
		if def.Roots != nil || def.SystemRoots {
			return nil, fmt.Errorf("%s.default_validation_context: trusted_ca comes from the SDS secret; set only match_typed_subject_alt_names here", path)
		}
		c.Validation.SANs = def.SANs
	default:
		return nil, fmt.Errorf("%s: unsupported validation context %T", field, v)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (d *Decoder) sdsValidation(s *tlsv3.SdsSecretConfig, field string) (*Validation, error) {
	if s.GetName() == "" {
		return nil, fmt.Errorf("%s.name: %w", field, errMissing)
	}
	if err := checkADS(s.GetSdsConfig(), field+".sds_config"); err != nil {
		return nil, err
	}
	return &Validation{RootsSecret: s.GetName()}, nil
}

func (d *Decoder) validationContext(pb *tlsv3.CertificateValidationContext, field string) (*Validation, error) {
	v := &Validation{SystemRoots: pb.GetSystemRootCerts() != nil}
	if pb.GetTrustedCa() != nil {
		if v.SystemRoots {
			return nil, fmt.Errorf("%s: trusted_ca and system_root_certs are exclusive", field)
		}
		b, err := d.dataSource(pb.GetTrustedCa(), field+".trusted_ca")
		if err != nil {
			return nil, err
		}
		certs, err := parseCerts(b)
		if err != nil {
			return nil, fmt.Errorf("%s.trusted_ca: %w", field, err)
		}
		v.Roots = x509.NewCertPool()
		for _, c := range certs {
			v.Roots.AddCert(c)
		}
	}
	for i, m := range pb.GetMatchTypedSubjectAltNames() {
		path := fmt.Sprintf("%s.match_typed_subject_alt_names[%d]", field, i)
		var t SANType
		switch m.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_URI:
			t = SANURI
		case tlsv3.SubjectAltNameMatcher_DNS:
			t = SANDNS
		case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
			t = SANIP
		default:
			return nil, fmt.Errorf("%s.san_type %v unsupported (URI, DNS, IP_ADDRESS)", path, m.GetSanType())
		}
		sm, err := stringMatcher(m.GetMatcher(), path+".matcher")
		if err != nil {
			return nil, err
		}
		v.SANs = append(v.SANs, SANMatcher{Type: t, Matcher: sm})
	}
	return v, nil
}

func stringMatcher(pb *matcherv3.StringMatcher, field string) (StringMatcher, error) {
	m := StringMatcher{IgnoreCase: pb.GetIgnoreCase()}
	switch p := pb.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		m.Kind, m.Value = StringExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		m.Kind, m.Value = StringPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		m.Kind, m.Value = StringSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		m.Kind, m.Value = StringContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileRegex(p.SafeRegex.GetRegex(), m.IgnoreCase)
		if err != nil {
			return m, fmt.Errorf("%s.safe_regex: %w", field, err)
		}
		m.Kind, m.Regex = StringRegex, re
	default:
		return m, fmt.Errorf("%s: a pattern is required", field)
	}
	if m.IgnoreCase {
		m.Value = strings.ToLower(m.Value)
	}
	return m, nil
}

// Match reports whether s matches.
func (m StringMatcher) Match(s string) bool {
	if m.Kind == StringRegex {
		return m.Regex.MatchString(s)
	}
	if m.IgnoreCase {
		s = strings.ToLower(s)
	}
	switch m.Kind {
	case StringExact:
		return s == m.Value
	case StringPrefix:
		return strings.HasPrefix(s, m.Value)
	case StringSuffix:
		return strings.HasSuffix(s, m.Value)
	case StringContains:
		return strings.Contains(s, m.Value)
	}
	return false
}

// maxBundleBytes bounds a trust bundle or certificate file.
const maxBundleBytes = 1 << 20

// parseCerts parses PEM CERTIFICATE blocks; anything else is an error.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	if len(b) > maxBundleBytes {
		return nil, fmt.Errorf("%d bytes, at most %d", len(b), maxBundleBytes)
	}
	var out []*x509.Certificate
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the PEM blocks")
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

func (d *Decoder) readFile(path string) ([]byte, error) {
	if d.opts.ReadFile != nil {
		return d.opts.ReadFile(path)
	}
	return os.ReadFile(path)
}

func (d *Decoder) dataSource(ds *corev3.DataSource, field string) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_Filename:
		if !filepath.IsAbs(s.Filename) {
			return nil, fmt.Errorf("%s.filename %q must be absolute", field, s.Filename)
		}
		b, err := d.readFile(s.Filename)
		if err != nil {
			return nil, fmt.Errorf("%s.filename: %w", field, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%s: %w", field, errMissing)
}

func tlsVersion(v tlsv3.TlsParameters_TlsProtocol, field string) (uint16, error) {
	switch v {
	case tlsv3.TlsParameters_TLS_AUTO:
		return 0, nil
	case tlsv3.TlsParameters_TLSv1_2:
		return tls.VersionTLS12, nil
	case tlsv3.TlsParameters_TLSv1_3:
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%s %v unsupported (TLS_AUTO, TLSv1_2, TLSv1_3)", field, v)
}

// Secret validates and unmarshals one SDS resource. Only validation contexts (trust
// bundles) are accepted: the proxy's own key never travels over xDS.
func (d *Decoder) Secret(a *anypb.Any) (Decoded[*Secret], error) {
	pb := &tlsv3.Secret{}
	if err := decode(a, SecretType, pb); err != nil {
		return Decoded[*Secret]{}, &UnmarshalError{Type: "Secret", Err: err}
	}
	s, err := d.secret(pb)
	if err != nil {
		return Decoded[*Secret]{}, &UnmarshalError{Type: "Secret", Name: pb.GetName(), Err: err}
	}
	return Decoded[*Secret]{Name: s.Name, Resource: s, Proto: pb}, nil
}

func (d *Decoder) secret(pb *tlsv3.Secret) (*Secret, error) {
	if err := d.allow.Message(pb); err != nil {
		return nil, err
	}
	if pb.GetName() == "" {
		return nil, fmt.Errorf("name: %w", errMissing)
	}
	vc := pb.GetValidationContext()
	if vc == nil {
		return nil, errors.New("validation_context: required (only trust bundles are served over SDS)")
	}
	if vc.GetTrustedCa() == nil || len(vc.GetMatchTypedSubjectAltNames()) > 0 || vc.GetSystemRootCerts() != nil {
		return nil, errors.New("validation_context: exactly trusted_ca is supported in an SDS secret")
	}
	b, err := d.dataSource(vc.GetTrustedCa(), "validation_context.trusted_ca")
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(b)
	if err != nil {
		return nil, fmt.Errorf("validation_context.trusted_ca: %w", err)
	}
	s := &Secret{Name: pb.GetName(), Roots: x509.NewCertPool(), RootsPEM: slices.Clone(b), RootCerts: certs}
	for _, c := range certs {
		s.Roots.AddCert(c)
	}
	return s, nil
}

// listenerFilter checks one listener filter: only the TLS inspector is supported.
func listenerFilter(name string, tc *anypb.Any, field string) error {
	if tc.GetTypeUrl() != tlsInspectorTypeURL {
		return fmt.Errorf("%s.typed_config: unsupported listener filter %q %q (only the TLS inspector)", field, name, tc.GetTypeUrl())
	}
	return tc.UnmarshalTo(&tlsinspectorv3.TlsInspector{})
}
