package workloadapi

import (
	"context"
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"skein.dev/skein/internal/ca"
)

func startServer(t *testing.T, authority *ca.CA, id ca.Identity) (*Server, string) {
	t.Helper()
	srv, err := New(Options{CA: authority, Identity: id, Name: "web-0.default"})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "wlapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, "unix://" + sock
}

// TestGoSpiffeClientGetsItsSVID uses go-spiffe's own Workload API client, written by
// the SPIFFE project, against the server.
func TestGoSpiffeClientGetsItsSVID(t *testing.T) {
	authority, err := ca.LoadOrCreate(t.TempDir(), ca.Options{WorkloadTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, authority, ca.Identity{Namespace: "shop", ServiceAccount: "web"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		t.Fatalf("go-spiffe FetchX509SVID: %v", err)
	}
	want := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web")
	if svid.ID != want {
		t.Errorf("SVID ID %s, want %s", svid.ID, want)
	}
	bundle, err := workloadapi.FetchX509Bundles(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		t.Fatalf("go-spiffe FetchX509Bundles: %v", err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		t.Errorf("SVID does not verify against the served bundle: %v", err)
	}
	if priv, ok := svid.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !priv.Equal(svid.Certificates[0].PublicKey) {
		t.Error("private key does not match the certificate")
	}

	// An X509Source follows renewals: within a few 2-second lifetimes it sees new SVIDs
	// and never holds an expired one.
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	serials := map[string]bool{}
	deadline := time.Now().Add(8 * time.Second)
	for len(serials) < 3 && time.Now().Before(deadline) {
		s, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(s.Certificates[0].NotAfter) {
			t.Fatalf("source holds an expired SVID (NotAfter %v)", s.Certificates[0].NotAfter)
		}
		serials[s.Certificates[0].SerialNumber.String()] = true
		time.Sleep(100 * time.Millisecond)
	}
	if len(serials) < 3 {
		t.Errorf("saw %d distinct SVIDs in 8s with a 2s TTL, want renewals", len(serials))
	}

}

func TestBundleChangeIsStreamed(t *testing.T) {
	authority, err := ca.LoadOrCreate(t.TempDir(), ca.Options{WorkloadTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv, addr := startServer(t, authority, ca.Identity{Namespace: "shop", ServiceAccount: "web"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := authority.PrepareRootRotation(); err != nil {
		t.Fatal(err)
	}
	srv.BundleChanged()
	next := authority.PreparedRoot()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("cluster.local"))
		if err == nil && containsCert(b.X509Authorities(), next) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the prepared root never reached the go-spiffe source's bundle")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containsCert(set []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range set {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// TestSecurityHeaderRequired: a request without the workload.spiffe.io header is
// refused, as the SPIFFE Workload Endpoint specification requires.
func TestSecurityHeaderRequired(t *testing.T) {
	authority, err := ca.LoadOrCreate(t.TempDir(), ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, authority, ca.Identity{Namespace: "shop", ServiceAccount: "web"})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("without the security header: %v, want InvalidArgument", err)
	}
	if _, err := workloadapi.FetchJWTSVID(ctx, jwtParams(), workloadapi.WithAddr(addr)); status.Code(err) != codes.Unimplemented {
		t.Errorf("FetchJWTSVID: %v, want Unimplemented", err)
	}
}

func TestListenRejectsLongPaths(t *testing.T) {
	long := "/tmp/" + string(make([]byte, 120))
	if _, err := Listen(long); err == nil {
		t.Error("Listen accepted a socket path longer than sun_path")
	}
}

func jwtParams() jwtsvid.Params { return jwtsvid.Params{Audience: "x"} }
