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
	case "http", "grpc-web":
		return model.ProtocolHTTP, true
	case "http2", "h2c", "kubernetes.io/h2c":
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

// PortProtocol chooses a service port's protocol as Istio does: appProtocol when set
// (even when skein does not know it), else the port name's prefix before the first
// "-" (http-web is HTTP), else unknown.
func PortProtocol(name, appProtocol string) model.Protocol {
	if appProtocol != "" {
		p, _ := ParseProtocol(appProtocol)
		return p
	}
	if strings.HasPrefix(strings.ToLower(name), "grpc-web") {
		return model.ProtocolHTTP
	}
	prefix, _, _ := strings.Cut(name, "-")
	p, _ := ParseProtocol(prefix)
	return p
}
