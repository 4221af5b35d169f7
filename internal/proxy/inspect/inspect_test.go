package inspect

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// clientHello returns the bytes a real crypto/tls client sends first.
func clientHello(t testing.TB, sni string, alpn []string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true})
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_ = c.Handshake()
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := b.Read(buf)
		out = append(out, buf[:n]...)
		if v, _ := parseTLS(out); v != needMore || err != nil {
			return out
		}
	}
}

func TestParseTLS(t *testing.T) {
	hello := clientHello(t, "Catalog.Default.svc.cluster.local", []string{"h2", "http/1.1"})
	v, h := parseTLS(hello)
	if v != yes {
		t.Fatalf("real ClientHello: verdict %v", v)
	}
	if diff := cmp.Diff(ClientHello{ServerName: "catalog.default.svc.cluster.local", ALPN: []string{"h2", "http/1.1"}}, h); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Every strict prefix needs more; nothing shorter decides.
	for i := 0; i < len(hello); i++ {
		if v, _ := parseTLS(hello[:i]); v != needMore {
			t.Fatalf("prefix of %d bytes: verdict %v, want needMore", i, v)
		}
	}
	noSNI := clientHello(t, "", nil)
	if v, h := parseTLS(noSNI); v != yes || h.ServerName != "" {
		t.Errorf("hello without SNI: %v %+v", v, h)
	}
	// The same hello split over two records is reassembled.
	rec := hello[5:]
	split := append([]byte{22, 3, 1, 0, 10}, rec[:10]...)
	n := len(rec) - 10
	split = append(split, 22, 3, 1, byte(n>>8), byte(n))
	split = append(split, rec[10:]...)
	if v, h2 := parseTLS(split); v != yes || h2.ServerName != h.ServerName {
		t.Errorf("fragmented hello: %v %+v", v, h2)
	}
	for _, s := range []string{"GET / HTTP/1.1\r\n", "\x16\x02", "\x16\x03\x01\x00\x05\x02", "\x17\x03\x03"} {
		if v, _ := parseTLS([]byte(s)); v != no {
			t.Errorf("parseTLS(%q) = %v, want no", s, v)
		}
	}
}

func TestParseHTTP(t *testing.T) {
	tests := []struct {
		in    string
		want  verdict
		proto string
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", yes, "http/1.1"},
		{"POST /a?b=c HTTP/1.0\r\n", yes, "http/1.0"},
		{"M-SEARCH * HTTP/1.1\r\n", yes, "http/1.1"},
		{h2Preface + "\x00\x00", yes, "h2c"},
		{"PRI * HTTP/2.0\r\n", needMore, ""},
		{"GET / HTTP/1.1", needMore, ""},
		{"GE", needMore, ""},
		{"", needMore, ""},
		{"get / HTTP/1.1\r\n", no, ""},
		{"GET / HTTP/2.0\r\n", no, ""},
		{"GET  / HTTP/1.1\r\n", no, ""},
		{"GET / FTP/1.1", no, ""},
		{"GET / HTTP/1.2", no, ""},
		{"\x16\x03\x01", no, ""},
		{"220 smtp.example.com ESMTP\r\n", no, ""},
		{"SSH-2.0-OpenSSH\r\n", no, ""},
		{"GET\r\n", no, ""},
	}
	for _, tt := range tests {
		v, p := parseHTTP([]byte(tt.in))
		if v != tt.want || p != tt.proto {
			t.Errorf("parseHTTP(%q) = %v %q, want %v %q", tt.in, v, p, tt.want, tt.proto)
		}
	}
}

// pair returns both ends of a real TCP connection on loopback.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestInspect(t *testing.T) {
	hello := clientHello(t, "api.example.com", []string{"h2"})
	tests := []struct {
		name    string
		send    []byte
		close   bool
		want    Result
		wantErr error
	}{
		{"http/1.1", []byte("GET /x HTTP/1.1\r\nHost: a\r\n\r\n"), false, Result{TransportProtocol: "raw_buffer", ApplicationProtocols: []string{"http/1.1"}}, nil},
		{"h2c", []byte(h2Preface), false, Result{TransportProtocol: "raw_buffer", ApplicationProtocols: []string{"h2c"}}, nil},
		{"tls", hello, false, Result{TransportProtocol: "tls", ServerName: "api.example.com", ApplicationProtocols: []string{"h2"}}, nil},
		{"opaque client-first", []byte("\x00\x01binary"), false, Result{TransportProtocol: "raw_buffer"}, nil},
		{"server-first: nothing sent", nil, false, Result{TransportProtocol: "raw_buffer", TimedOut: true}, ErrTimeout},
		{"partial then close", []byte("GET /"), true, Result{TransportProtocol: "raw_buffer"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := pair(t)
			if len(tt.send) > 0 {
				if _, err := client.Write(tt.send); err != nil {
					t.Fatal(err)
				}
			}
			if tt.close {
				client.(*net.TCPConn).CloseWrite()
			}
			c := Wrap(server)
			got, err := Inspect(c, Options{TLS: true, HTTP: true, Timeout: 200 * time.Millisecond})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Inspect error %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			// Whatever was read is replayed, then the stream goes on.
			client.Write([]byte("MORE"))
			client.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			all, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			want := append(slices.Clone(tt.send), "MORE"...)
			if tt.close {
				want = tt.send // the write side was already closed
			}
			if string(all) != string(want) {
				t.Errorf("replayed %q, want %q", all, want)
			}
		})
	}
}

func FuzzParseTLS(f *testing.F) {
	f.Add(clientHello(f, "a.b", []string{"h2"}))
	f.Add([]byte("\x16\x03\x01\x00\x04\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, h := parseTLS(b)
		if v != yes && (h.ServerName != "" || h.ALPN != nil) {
			t.Fatalf("result without yes: %v %+v", v, h)
		}
		if v == yes {
			// More bytes after a complete hello do not change the answer.
			v2, h2 := parseTLS(append(slices.Clone(b), 0x17, 0x03))
			if v2 != yes || !cmp.Equal(h, h2) {
				t.Fatalf("trailing bytes changed the verdict: %v %+v", v2, h2)
			}
		}
	})
}

func FuzzParseHTTP(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", h2Preface, "PRI", "\x16\x03", "HEAD /x HTTP/1.0\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, p := parseHTTP(b)
		if v == yes {
			// A decision never changes as more bytes arrive.
			if v2, p2 := parseHTTP(append(slices.Clone(b), "x\r\n"...)); v2 != yes || p2 != p {
				t.Fatalf("%q: decided %q, then %v %q with more bytes", b, p, v2, p2)
			}
		}
		if v == no {
			if v2, _ := parseHTTP(append(slices.Clone(b), "x\r\n"...)); v2 != no {
				t.Fatalf("%q: rejected, then %v with more bytes", b, v2)
			}
		}
	})
}
