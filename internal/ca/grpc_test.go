package ca

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// startCAServer serves ca over real TLS on 127.0.0.1:0. The server certificate is an
// SVID of the control plane issued by the same CA, and the client checks it with
// go-spiffe against the bundle, as a proxy will.
func startCAServer(t *testing.T, ca *CA) *grpc.ClientConn {
	t.Helper()
	cred, err := ca.IssueCredential("skein-system", "skein-control", "")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, err := GenerateKeyAndCSR(cred.SPIFFEID.String())
	if err != nil {
		t.Fatal(err)
	}
	issued, err := ca.Sign(context.Background(), SignRequest{CSR: csrPEM, Credential: cred.Token})
	if err != nil {
		t.Fatal(err)
	}
	serverSVID, err := x509svid.Parse(issued.ChainPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsconfig.TLSServerConfig(serverSVID))))
	NewServer(ca).Register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	bundle := x509bundle.FromX509Authorities(ca.TrustDomain(), ca.Bundle())
	clientTLS := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(cred.SPIFFEID))
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestGRPCCreateCertificate(t *testing.T) {
	ca := newTestCA(t, Options{WorkloadTTL: time.Hour})
	conn := startCAServer(t, ca)
	client := NewClient(conn)

	credA, err := ca.IssueCredential("shop", "web", "proxy-a")
	if err != nil {
		t.Fatal(err)
	}
	credB, err := ca.IssueCredential("shop", "db", "proxy-b")
	if err != nil {
		t.Fatal(err)
	}
	keyA, csrA, err := GenerateKeyAndCSR(credA.SPIFFEID.String())
	if err != nil {
		t.Fatal(err)
	}
	badCSR := makeCSR(t, csrSpec{uris: []string{credA.SPIFFEID.String()}, dns: []string{"web.shop.svc"}})

	tests := []struct {
		name     string
		client   *Client
		token    string
		csr      []byte
		ttl      time.Duration
		wantCode codes.Code
	}{
		{"ok", client, credA.Token, csrA, 10 * time.Minute, codes.OK},
		{"ok with proxy ID", client.WithProxyID("proxy-a"), credA.Token, csrA, 0, codes.OK},
		{"empty CSR", client, credA.Token, nil, 0, codes.InvalidArgument},
		{"empty CSR and bad token: shape wins", client, "bogus", nil, 0, codes.InvalidArgument},
		{"CSR with DNS SAN", client, credA.Token, badCSR, 0, codes.InvalidArgument},
		{"bad CSR and bad token: CSR wins", client, "bogus", badCSR, 0, codes.InvalidArgument},
		{"unknown token", client, tokenPrefix + "nope", csrA, 0, codes.Unauthenticated},
		{"empty token", client, "", csrA, 0, codes.Unauthenticated},
		{"credential bound to another proxy", client.WithProxyID("proxy-z"), credA.Token, csrA, 0, codes.Unauthenticated},
		{"credential of B for identity A", client, credB.Token, csrA, 0, codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := tc.client.CreateCertificate(ctx, tc.token, tc.csr, tc.ttl)
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("code = %v, want %v (err %v)", got, tc.wantCode, err)
			}
			if tc.wantCode != codes.OK {
				return
			}
			cert, id, err := ParseSVID(resp.ChainPEM(), keyA)
			if err != nil {
				t.Fatal(err)
			}
			if id != credA.SPIFFEID {
				t.Errorf("id = %s, want %s", id, credA.SPIFFEID)
			}
			bundle, err := x509bundle.Parse(ca.TrustDomain(), resp.BundlePEM())
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := x509svid.ParseAndVerify(cert.Certificate, bundle); err != nil {
				t.Errorf("verify against returned bundle: %v", err)
			}
			wantTTL := tc.ttl
			if wantTTL == 0 {
				wantTTL = time.Hour
			}
			if got := time.Until(cert.Leaf.NotAfter); got > wantTTL || got < wantTTL-time.Minute {
				t.Errorf("leaf expires in %s, want about %s", got, wantTTL)
			}
		})
	}
}

// Raw calls for request shapes the typed client cannot produce.
func TestGRPCRawRequests(t *testing.T) {
	ca := newTestCA(t, Options{})
	conn := startCAServer(t, ca)
	cred, err := ca.IssueCredential("shop", "web", "")
	if err != nil {
		t.Fatal(err)
	}
	_, csr, err := GenerateKeyAndCSR(cred.SPIFFEID.String())
	if err != nil {
		t.Fatal(err)
	}
	csrValue := structpb.NewStringValue(string(csr))
	tests := []struct {
		name     string
		fields   map[string]*structpb.Value
		md       []string
		wantCode codes.Code
	}{
		{"ok", map[string]*structpb.Value{"csr": csrValue}, []string{"authorization", "Bearer " + cred.Token}, codes.OK},
		{"lowercase bearer", map[string]*structpb.Value{"csr": csrValue}, []string{"authorization", "bearer " + cred.Token}, codes.OK},
		{"no authorization", map[string]*structpb.Value{"csr": csrValue}, nil, codes.Unauthenticated},
		{"basic auth", map[string]*structpb.Value{"csr": csrValue}, []string{"authorization", "Basic " + cred.Token}, codes.Unauthenticated},
		{"two authorization values", map[string]*structpb.Value{"csr": csrValue}, []string{"authorization", "Bearer " + cred.Token, "authorization", "Bearer x"}, codes.Unauthenticated},
		{"unknown field", map[string]*structpb.Value{"csr": csrValue, "identity": structpb.NewStringValue("admin")}, []string{"authorization", "Bearer " + cred.Token}, codes.InvalidArgument},
		{"csr not a string", map[string]*structpb.Value{"csr": structpb.NewNumberValue(1)}, []string{"authorization", "Bearer " + cred.Token}, codes.InvalidArgument},
		{"fractional ttl", map[string]*structpb.Value{"csr": csrValue, "ttl_seconds": structpb.NewNumberValue(1.5)}, []string{"authorization", "Bearer " + cred.Token}, codes.InvalidArgument},
		{"negative ttl", map[string]*structpb.Value{"csr": csrValue, "ttl_seconds": structpb.NewNumberValue(-5)}, []string{"authorization", "Bearer " + cred.Token}, codes.InvalidArgument},
		{"ttl as string", map[string]*structpb.Value{"csr": csrValue, "ttl_seconds": structpb.NewStringValue("60")}, []string{"authorization", "Bearer " + cred.Token}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.md != nil {
				ctx = metadata.AppendToOutgoingContext(ctx, tc.md...)
			}
			out := new(structpb.Struct)
			err := conn.Invoke(ctx, CreateCertificateMethod, &structpb.Struct{Fields: tc.fields}, out)
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("code = %v, want %v (err %v)", got, tc.wantCode, err)
			}
			if tc.wantCode != codes.OK {
				return
			}
			var keys []string
			for k := range out.GetFields() {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if diff := cmp.Diff([]string{"cert_chain", "trust_bundle"}, keys); diff != "" {
				t.Errorf("response fields (-want +got):\n%s", diff)
			}
		})
	}
}

// The bundle served after a root rotation carries both roots, and a proxy holding a
// pre-rotation SVID still verifies against it.
func TestGRPCBundleAfterRotation(t *testing.T) {
	ca := newTestCA(t, Options{})
	conn := startCAServer(t, ca) // the server SVID is from the first root
	client := NewClient(conn)
	cred, err := ca.IssueCredential("shop", "web", "")
	if err != nil {
		t.Fatal(err)
	}
	key, csr, err := GenerateKeyAndCSR(cred.SPIFFEID.String())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before, err := client.CreateCertificate(ctx, cred.Token, csr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	after, err := client.CreateCertificate(ctx, cred.Token, csr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.TrustBundle) != 2 {
		t.Fatalf("bundle after rotation has %d roots, want 2", len(after.TrustBundle))
	}
	bundle, err := x509bundle.Parse(ca.TrustDomain(), after.BundlePEM())
	if err != nil {
		t.Fatal(err)
	}
	for name, resp := range map[string]*CertificateResponse{"before": before, "after": after} {
		cert, _, err := ParseSVID(resp.ChainPEM(), key)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := x509svid.ParseAndVerify(cert.Certificate, bundle); err != nil {
			t.Errorf("%s rotation: %v", name, err)
		}
	}
}
