// Package kube turns Kubernetes core objects (v1 Service) into the skein model.
package kube

import (
	"strings"

	"skein.dev/skein/internal/model"
)

// ParseProtocol reads a protocol name as Istio does (case-insensitive). ok is false
// for a name skein does not know.
func ParseProtocol(s string) (p model.Protocol, ok bool) {
	switch strings.ToLower(s) {
	case "http", "grpc-web", "http_proxy":
		return model.ProtocolHTTP, true
	case "http2", "h2c", "kubernetes.io/h2c": // h2c: a skein extension, Istio knows http2 only
		return model.ProtocolHTTP2, true
	case "grpc":
		return model.ProtocolGRPC, true
	case "tcp":
		return model.ProtocolTCP, true
	case "https", "tls", "mongo", "redis", "mysql":
		// Opaque to skein until TLS origination and these protocols' filters exist.
		return model.ProtocolTCP, true
	}
	return model.ProtocolUnknown, false
}

// PortProtocol chooses a service port's protocol as Istio does (its ConvertProtocol):
// appProtocol when set, even when skein does not know it, else the port name. The
// Kubernetes names kubernetes.io/h2c (HTTP2) and kubernetes.io/ws, kubernetes.io/wss
// (HTTP: WebSocket starts as HTTP/1.1) count for appProtocol only. Otherwise the value
// is read up to its first "-" (http-web and an appProtocol http-x are HTTP), except
// grpc-web (HTTP); anything else is unknown (sniffed in capture mode).
func PortProtocol(name, appProtocol string) model.Protocol {
	value := name
	if appProtocol != "" {
		value = appProtocol
		switch strings.ToLower(appProtocol) {
		case "kubernetes.io/h2c":
			return model.ProtocolHTTP2
		case "kubernetes.io/ws", "kubernetes.io/wss":
			return model.ProtocolHTTP
		}
	}
	if strings.HasPrefix(strings.ToLower(value), "grpc-web") {
		return model.ProtocolHTTP
	}
	prefix, _, _ := strings.Cut(value, "-")
	p, _ := ParseProtocol(prefix)
	return p
}
