package forward

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestPeerExchange(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	type result struct {
		md  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		md, err := exchangeAsClient(client, "client-md", exchangeTimeout)
		if err == nil {
			_, err = client.Write([]byte("data after the frame"))
		}
		done <- result{md, err}
	}()
	conn, md, err := exchangeAsServer(server, "server-md")
	if err != nil || md != "client-md" {
		t.Fatalf("server got %q, %v", md, err)
	}
	buf := make([]byte, len("data after the frame"))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "data after the frame" {
		t.Fatalf("data after the exchange: %q %v", buf, err)
	}
	if r := <-done; r.err != nil || r.md != "server-md" {
		t.Fatalf("client got %q, %v", r.md, r.err)
	}
}

// A client that negotiated the protocol but sends data first (skein's HTTP path on an
// undeclared port) is passed through untouched and gets no frame.
func TestPeerExchangePassesPlainData(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	go func() { _, _ = client.Write([]byte(req)) }()
	conn, md, err := exchangeAsServer(server, "server-md")
	if err != nil || md != "" {
		t.Fatalf("got %q, %v", md, err)
	}
	buf := make([]byte, len(req))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != req {
		t.Fatalf("data: %q %v", buf, err)
	}
}

// A server that is not skein's (no frame back) fails the client's exchange in bounded
// time instead of hanging.
func TestPeerExchangeClientFailsWithoutAnswer(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go func() { _, _ = io.Copy(io.Discard, server) }()
	start := time.Now()
	if _, err := exchangeAsClient(client, "x", 200*time.Millisecond); err == nil {
		t.Fatal("exchange without an answer succeeded")
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

func FuzzExchangeServer(f *testing.F) {
	f.Add(append(append([]byte{}, exchangeMagic...), 0, 3, 'a', 'b', 'c'))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(append(append([]byte{}, exchangeMagic...), 0xff, 0xff))
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		defer client.Close()
		defer server.Close()
		go func() {
			_, _ = client.Write(in)
			client.Close() // no more: the server must not wait
		}()
		conn, md, err := exchangeAsServer(server, "m")
		if err != nil {
			return
		}
		if len(md) > maxExchangePayload {
			t.Fatalf("payload of %d bytes", len(md))
		}
		_ = conn
	})
}
