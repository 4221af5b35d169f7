package inspect

import "bytes"

// h2Preface is the HTTP/2 connection preface a prior-knowledge (h2c) client sends.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxRequestLine bounds how much of a request line the HTTP inspector reads.
const maxRequestLine = 8 << 10

// parseHTTP says whether b starts an HTTP/1.x request or the HTTP/2 preface, and which
// ("http/1.1", "http/1.0" or "h2c"): needMore while b could still be either, no as soon
// as it cannot, as Envoy's http_inspector does with the request line.
func parseHTTP(b []byte) (verdict, string) {
	if len(b) == 0 {
		return needMore, ""
	}
	if n := min(len(b), len(h2Preface)); string(b[:n]) == h2Preface[:n] {
		if n == len(h2Preface) {
			return yes, "h2c"
		}
		return needMore, "" // "PRI * HTTP/2.0" is also a valid HTTP/1 start; keep reading
	}
	line := b
	complete := false
	if i := bytes.Index(b, []byte("\r\n")); i >= 0 {
		line, complete = b[:i], true
	} else if len(b) > maxRequestLine {
		return no, ""
	}
	// METHOD SP request-target SP HTTP/1.x
	i := 0
	for i < len(line) && isTokenChar(line[i]) {
		i++
	}
	if i == len(line) {
		if complete || i > 32 {
			return no, ""
		}
		return needMore, ""
	}
	if i == 0 || line[i] != ' ' {
		return no, ""
	}
	j := i + 1
	for j < len(line) && line[j] > ' ' && line[j] != 0x7f {
		j++
	}
	if j == len(line) {
		if complete {
			return no, ""
		}
		return needMore, ""
	}
	if j == i+1 || line[j] != ' ' {
		return no, ""
	}
	version := line[j+1:]
	const want = "HTTP/1."
	if n := min(len(version), len(want)); string(version[:n]) != want[:n] {
		return no, ""
	}
	if !complete {
		if len(version) > len(want)+1 {
			return no, ""
		}
		if len(version) == len(want)+1 && version[len(want)] != '0' && version[len(want)] != '1' {
			return no, ""
		}
		return needMore, ""
	}
	switch string(version) {
	case "HTTP/1.1":
		return yes, "http/1.1"
	case "HTTP/1.0":
		return yes, "http/1.0"
	}
	return no, ""
}

// isTokenChar: methods are upper-case tokens in practice (GET, POST, M-SEARCH).
func isTokenChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c == '-' || c == '_'
}
