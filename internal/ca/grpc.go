package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// The CSR service, described by hand (no protoc here). Messages are
// google.protobuf.Struct so the wire format is still plain protobuf:
//
//	rpc CreateCertificate(Struct{csr: string, ttl_seconds: number}) returns
//	    (Struct{cert_chain: [string...], trust_bundle: [string...]})
//
// The bootstrap token travels in the "authorization: Bearer <token>" metadata and the
// proxy ID, when the proxy knows it, in "x-skein-proxy-id". Serve it over TLS outside
// of loopback: the token is a bearer secret.
const (
	ServiceName             = "skein.ca.v1.Certificate"
	CreateCertificateMethod = "/" + ServiceName + "/CreateCertificate"
	ProxyIDMetadataKey      = "x-skein-proxy-id"

	fieldCSR         = "csr"
	fieldTTLSeconds  = "ttl_seconds"
	fieldCertChain   = "cert_chain"
	fieldTrustBundle = "trust_bundle"
)

// certificateServer is the handler type the ServiceDesc dispatches to.
type certificateServer interface {
	CreateCertificate(context.Context, *structpb.Struct) (*structpb.Struct, error)
}

// Server exposes a CA over gRPC and maps its typed errors to status codes; this is the
// only place that knows about gRPC codes.
type Server struct {
	ca *CA
}

var _ certificateServer = (*Server)(nil)

// NewServer returns the gRPC face of ca.
func NewServer(ca *CA) *Server { return &Server{ca: ca} }

// Register adds the service to a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) { r.RegisterService(serviceDesc(), s) }

func serviceDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: ServiceName,
		HandlerType: (*certificateServer)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "CreateCertificate",
			Handler:    createCertificateHandler,
		}},
		Metadata: "skein/ca/v1/certificate.proto (hand-written, Struct messages)",
	}
}

func createCertificateHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(structpb.Struct)
	if err := dec(in); err != nil {
		return nil, err
	}
	call := func(ctx context.Context, req any) (any, error) {
		return srv.(certificateServer).CreateCertificate(ctx, req.(*structpb.Struct))
	}
	if interceptor == nil {
		return call(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: CreateCertificateMethod}, call)
}

// CreateCertificate implements the RPC.
func (s *Server) CreateCertificate(ctx context.Context, in *structpb.Struct) (*structpb.Struct, error) {
	req, err := decodeRequest(in)
	if err != nil {
		return nil, statusFromError(err)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	req.Credential = bearerToken(md.Get("authorization"))
	if ids := md.Get(ProxyIDMetadataKey); len(ids) == 1 {
		req.ProxyID = ids[0]
	}
	svid, err := s.ca.Sign(ctx, req)
	if err != nil {
		return nil, statusFromError(err)
	}
	out := &structpb.Struct{Fields: map[string]*structpb.Value{
		fieldCertChain:   pemList(svid.Chain),
		fieldTrustBundle: pemList(svid.Bundle),
	}}
	return out, nil
}

// decodeRequest accepts exactly {csr: string, ttl_seconds?: non-negative integer}.
// Its failures are request-shape errors like those of Sign.
func decodeRequest(in *structpb.Struct) (SignRequest, error) {
	var req SignRequest
	for name, v := range in.GetFields() {
		switch name {
		case fieldCSR:
			sv, ok := v.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return req, failf(StageRequest, ErrRequestField, "field %q must be a string", name)
			}
			req.CSR = []byte(sv.StringValue)
		case fieldTTLSeconds:
			nv, ok := v.GetKind().(*structpb.Value_NumberValue)
			if !ok {
				return req, failf(StageRequest, ErrRequestField, "field %q must be a number", name)
			}
			n := nv.NumberValue
			if n < 0 || n != math.Trunc(n) || n > maxTTLRequest.Seconds() {
				return req, failf(StageRequest, ErrBadTTL, "field %q must be a whole number of seconds in range, got %v", name, n)
			}
			req.TTL = time.Duration(n) * time.Second
		default:
			return req, &SignError{Stage: StageRequest, Reason: ErrRequestField, Detail: fmt.Sprintf("%q", name)}
		}
	}
	return req, nil
}

// bearerToken returns the token of a single "Bearer <token>" header, or "" so that Sign
// reports a missing credential in its proper turn (after shape and CSR checks).
func bearerToken(values []string) string {
	if len(values) != 1 {
		return ""
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

func statusFromError(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, ErrInvalidRequest), errors.Is(err, ErrInvalidCSR):
		code = codes.InvalidArgument
	case errors.Is(err, ErrInvalidCredential):
		code = codes.Unauthenticated
	case errors.Is(err, ErrIdentityMismatch):
		code = codes.PermissionDenied
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	default:
		return status.Error(code, "ca: internal error issuing certificate")
	}
	return status.Error(code, err.Error())
}

func pemList(certs []*x509.Certificate) *structpb.Value {
	vals := make([]*structpb.Value, 0, len(certs))
	for _, c := range certs {
		vals = append(vals, structpb.NewStringValue(string(encodeCerts([]*x509.Certificate{c}))))
	}
	return structpb.NewListValue(&structpb.ListValue{Values: vals})
}

// Client is the typed client of the CSR service.
type Client struct {
	conn    grpc.ClientConnInterface
	proxyID string
}

// NewClient wraps a connection to a control plane serving the CSR service.
func NewClient(conn grpc.ClientConnInterface) *Client { return &Client{conn: conn} }

// WithProxyID returns a client that names its proxy in every request, so the CA binds
// the credential to it on first use.
func (c *Client) WithProxyID(id string) *Client { return &Client{conn: c.conn, proxyID: id} }

// CertificateResponse is what the CA returns: PEM certificates, leaf first, and the roots.
type CertificateResponse struct {
	CertChain   []string
	TrustBundle []string
}

// ChainPEM concatenates CertChain.
func (r *CertificateResponse) ChainPEM() []byte { return []byte(strings.Join(r.CertChain, "")) }

// BundlePEM concatenates TrustBundle.
func (r *CertificateResponse) BundlePEM() []byte { return []byte(strings.Join(r.TrustBundle, "")) }

// CreateCertificate sends a CSR with the bootstrap token; ttl zero asks for the CA's default.
// Errors are gRPC status errors (InvalidArgument, Unauthenticated, PermissionDenied...).
func (c *Client) CreateCertificate(ctx context.Context, token string, csrPEM []byte, ttl time.Duration) (*CertificateResponse, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	if c.proxyID != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, ProxyIDMetadataKey, c.proxyID)
	}
	in := &structpb.Struct{Fields: map[string]*structpb.Value{
		fieldCSR:        structpb.NewStringValue(string(csrPEM)),
		fieldTTLSeconds: structpb.NewNumberValue(math.Ceil(ttl.Seconds())),
	}}
	out := new(structpb.Struct)
	if err := c.conn.Invoke(ctx, CreateCertificateMethod, in, out); err != nil {
		return nil, err
	}
	chain, err := stringList(out, fieldCertChain)
	if err != nil {
		return nil, err
	}
	bundle, err := stringList(out, fieldTrustBundle)
	if err != nil {
		return nil, err
	}
	return &CertificateResponse{CertChain: chain, TrustBundle: bundle}, nil
}

func stringList(s *structpb.Struct, field string) ([]string, error) {
	lv, ok := s.GetFields()[field].GetKind().(*structpb.Value_ListValue)
	if !ok || len(lv.ListValue.GetValues()) == 0 {
		return nil, fmt.Errorf("ca: response field %q missing or empty", field)
	}
	var out []string
	for _, v := range lv.ListValue.GetValues() {
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok || !bytes.HasPrefix(bytes.TrimSpace([]byte(sv.StringValue)), []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, fmt.Errorf("ca: response field %q holds a non-PEM value", field)
		}
		out = append(out, sv.StringValue)
	}
	return out, nil
}
