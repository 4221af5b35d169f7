package kube

import (
	"testing"

	"skein.dev/skein/internal/model"
)

func TestPortProtocol(t *testing.T) {
	tests := []struct {
		name, appProtocol string
		want              model.Protocol
	}{
		{"http", "", model.ProtocolHTTP},
		{"http-web", "", model.ProtocolHTTP},
		{"HTTP-web", "", model.ProtocolHTTP},
		{"http2", "", model.ProtocolHTTP2},
		{"grpc", "", model.ProtocolGRPC},
		{"grpc-api", "", model.ProtocolGRPC},
		{"grpc-web", "", model.ProtocolHTTP},
		{"tcp-db", "", model.ProtocolTCP},
		{"https", "", model.ProtocolTCP},
		{"tls-x", "", model.ProtocolTCP},
		{"mongo", "", model.ProtocolTCP},
		{"redis-cache", "", model.ProtocolTCP},
		{"mysql", "", model.ProtocolTCP},
		{"httpfoo", "", model.ProtocolUnknown},
		{"web", "", model.ProtocolUnknown},
		{"", "", model.ProtocolUnknown},
		{"tcp", "http", model.ProtocolHTTP},
		{"http", "tcp", model.ProtocolTCP},
		{"x", "h2c", model.ProtocolHTTP2},
		{"x", "kubernetes.io/h2c", model.ProtocolHTTP2},
		{"x", "grpc", model.ProtocolGRPC},
		{"x", "http2", model.ProtocolHTTP2},
		{"http", "spdy", model.ProtocolUnknown}, // appProtocol wins even when unknown, as in Istio
		{"tcp", "kubernetes.io/ws", model.ProtocolHTTP},
		{"tcp", "kubernetes.io/wss", model.ProtocolHTTP},
		{"tcp", "http-v1", model.ProtocolHTTP}, // appProtocol read up to "-", as a name
		{"tcp", "grpc-web", model.ProtocolHTTP},
		{"x", "HTTP2", model.ProtocolHTTP2},
		{"http_proxy", "", model.ProtocolHTTP},
		{"udp", "", model.ProtocolUnknown},
	}
	for _, tt := range tests {
		if got := PortProtocol(tt.name, tt.appProtocol); got != tt.want {
			t.Errorf("PortProtocol(%q, %q) = %q, want %q", tt.name, tt.appProtocol, got, tt.want)
		}
	}
}
