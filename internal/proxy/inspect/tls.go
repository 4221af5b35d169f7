package inspect

import "strings"

// verdict is a detector's answer for the bytes seen so far.
type verdict int

const (
	needMore verdict = iota
	no
	yes
)

// ClientHello is what the TLS inspector learns from a ClientHello.
type ClientHello struct {
	ServerName string   // SNI host name, lower case; "" when absent
	ALPN       []string // offered application protocols, in order
}

// maxHandshake bounds the ClientHello the inspector reads (one or more records).
const maxHandshake = 64 << 10

// parseTLS looks for a TLS ClientHello at the start of b. It says needMore while b is a
// valid prefix of one, no as soon as it cannot be one, yes with the hello once complete.
func parseTLS(b []byte) (verdict, ClientHello) {
	// Record layer: type 22 (handshake), version 3.x, length.
	var hs []byte
	rest := b
	for {
		if len(rest) == 0 {
			return needMore, ClientHello{}
		}
		if rest[0] != 22 {
			return no, ClientHello{} // not a handshake record (or one cut the hello short)
		}
		if len(rest) >= 2 && rest[1] != 3 || len(rest) >= 3 && rest[2] > 4 {
			return no, ClientHello{}
		}
		if len(rest) < 5 {
			return needMore, ClientHello{}
		}
		n := int(rest[3])<<8 | int(rest[4])
		if n == 0 || n > 1<<14+2048 {
			return no, ClientHello{}
		}
		if len(rest) < 5+n {
			// The record is not complete; the handshake header can be checked already.
			hs = append(hs, rest[5:]...)
			if v := checkHandshakeHeader(hs); v == no {
				return no, ClientHello{}
			}
			return needMore, ClientHello{}
		}
		hs = append(hs, rest[5:5+n]...)
		rest = rest[5+n:]
		switch v := checkHandshakeHeader(hs); v {
		case no:
			return no, ClientHello{}
		case needMore:
			continue
		}
		total := 4 + (int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]))
		if total > maxHandshake {
			return no, ClientHello{}
		}
		if len(hs) < total {
			continue // the hello spans more records
		}
		hello, ok := parseClientHello(hs[4:total])
		if !ok {
			return no, ClientHello{}
		}
		return yes, hello
	}
}

// checkHandshakeHeader: type 1 (ClientHello) and a plausible length.
func checkHandshakeHeader(hs []byte) verdict {
	if len(hs) == 0 {
		return needMore
	}
	if hs[0] != 1 {
		return no
	}
	if len(hs) < 4 {
		return needMore
	}
	if n := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]); n < 38 || n > maxHandshake {
		return no
	}
	return yes
}

// reader reads length-prefixed fields, failing softly.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) bytes(n int) []byte {
	if !r.ok || n < 0 || len(r.b) < n {
		r.ok = false
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() int {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return int(v[0])
}

func (r *reader) u16() int {
	v := r.bytes(2)
	if v == nil {
		return 0
	}
	return int(v[0])<<8 | int(v[1])
}

// parseClientHello parses the body of a ClientHello handshake message.
func parseClientHello(body []byte) (ClientHello, bool) {
	r := &reader{b: body, ok: true}
	var h ClientHello
	r.bytes(2)  // legacy_version
	r.bytes(32) // random
	r.bytes(r.u8())
	if n := r.u16(); n == 0 || n%2 != 0 {
		return h, false
	} else {
		r.bytes(n)
	}
	r.bytes(r.u8()) // compression methods
	if !r.ok {
		return h, false
	}
	if len(r.b) == 0 {
		return h, true // no extensions (old clients)
	}
	ext := &reader{b: r.bytes(r.u16()), ok: r.ok}
	for ext.ok && len(ext.b) > 0 {
		typ := ext.u16()
		data := &reader{b: ext.bytes(ext.u16()), ok: ext.ok}
		if !ext.ok {
			return h, false
		}
		switch typ {
		case 0: // server_name
			list := &reader{b: data.bytes(data.u16()), ok: data.ok}
			for list.ok && len(list.b) > 0 {
				kind := list.u8()
				name := list.bytes(list.u16())
				if list.ok && kind == 0 && h.ServerName == "" {
					h.ServerName = strings.ToLower(string(name))
				}
			}
			if !list.ok {
				return h, false
			}
		case 16: // application_layer_protocol_negotiation
			list := &reader{b: data.bytes(data.u16()), ok: data.ok}
			for list.ok && len(list.b) > 0 {
				p := list.bytes(list.u8())
				if list.ok && len(p) > 0 {
					h.ALPN = append(h.ALPN, string(p))
				}
			}
			if !list.ok {
				return h, false
			}
		}
	}
	return h, ext.ok
}
