package forward

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// TCP metadata exchange. HTTP carries the peers' workload metadata in a header
// (telemetry.PeerHeader); a TCP connection has no headers, so between two skein
// sidecars over mesh mTLS the metadata travels in-band, as Istio's sidecars do with
// their own protocol: the client offers ALPN tlsconf.PeerExchangeALPN, and when the
// server's TCP chain accepts it, the client sends one frame (magic, 2-byte length,
// the PeerHeader value) right after the handshake and reads the server's frame before
// any data. The server answers only a frame that starts with the magic, so a client
// that negotiated the protocol but sends data at once (skein's HTTP path on an
// undeclared port) is passed through untouched.

// exchangeMagic starts a frame; it cannot start a TLS record, an HTTP request or a
// PROXY header.
var exchangeMagic = []byte("\x00skein-mx\x01")

// maxExchangePayload bounds a peer's frame.
const maxExchangePayload = 4096

// exchangeTimeout bounds the exchange: both frames are sent at once.
const exchangeTimeout = 5 * time.Second

var errExchange = errors.New("peer metadata exchange")

func writeExchangeFrame(w io.Writer, payload string) error {
	if len(payload) > maxExchangePayload {
		payload = ""
	}
	b := make([]byte, 0, len(exchangeMagic)+2+len(payload))
	b = append(b, exchangeMagic...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, payload...)
	_, err := w.Write(b)
	return err
}

// readExchangePayload reads a frame's length and payload (the magic already read).
func readExchangePayload(r io.Reader) (string, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", err
	}
	size := int(binary.BigEndian.Uint16(n[:]))
	if size > maxExchangePayload {
		return "", fmt.Errorf("%w: frame of %d bytes", errExchange, size)
	}
	p := make([]byte, size)
	if _, err := io.ReadFull(r, p); err != nil {
		return "", err
	}
	return string(p), nil
}

// exchangeAsClient sends the local metadata and returns the server's, within timeout.
func exchangeAsClient(c net.Conn, local string, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if err := writeExchangeFrame(c, local); err != nil {
		return "", fmt.Errorf("%w: %v", errExchange, err)
	}
	magic := make([]byte, len(exchangeMagic))
	if _, err := io.ReadFull(c, magic); err != nil {
		return "", fmt.Errorf("%w: %v", errExchange, err)
	}
	if !bytes.Equal(magic, exchangeMagic) {
		return "", fmt.Errorf("%w: the server sent no metadata frame", errExchange)
	}
	p, err := readExchangePayload(c)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errExchange, err)
	}
	return p, nil
}

// exchangeAsServer reads the client's frame, if its first bytes are one, and answers
// with the local metadata. It returns the connection to use from now on (bytes read
// ahead are kept) and the client's metadata ("" when it sent none).
func exchangeAsServer(c net.Conn, local string) (net.Conn, string, error) {
	br := bufio.NewReaderSize(c, 512)
	out := &bufferedConn{Conn: c, r: br}
	_ = c.SetReadDeadline(time.Now().Add(exchangeTimeout))
	head, err := br.Peek(len(exchangeMagic))
	_ = c.SetReadDeadline(time.Time{})
	if err != nil || !bytes.Equal(head, exchangeMagic) {
		// Not a frame (or nothing yet): plain data, passed through as it comes.
		return out, "", nil
	}
	_, _ = br.Discard(len(exchangeMagic))
	_ = c.SetDeadline(time.Now().Add(exchangeTimeout))
	defer c.SetDeadline(time.Time{})
	p, err := readExchangePayload(br)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", errExchange, err)
	}
	if err := writeExchangeFrame(c, local); err != nil {
		return nil, "", fmt.Errorf("%w: %v", errExchange, err)
	}
	return out, p, nil
}

// bufferedConn reads through a bufio.Reader that may hold bytes read ahead.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// CloseWrite half-closes the underlying connection (splice's half-close).
func (b *bufferedConn) CloseWrite() error {
	if cw, ok := b.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return b.Conn.Close()
}
