package translate

import (
	"strconv"
	"strings"
)

// Names follow Istio's conventions (docs/XDS.md "Names").

// OutboundClusterName is `outbound|<port>|<subset>|<fqdn>`.
func OutboundClusterName(port int, subset, host string) string {
	return "outbound|" + strconv.Itoa(port) + "|" + subset + "|" + host
}

// InboundClusterName is `inbound|<containerPort>||`.
func InboundClusterName(containerPort int) string {
	return "inbound|" + strconv.Itoa(containerPort) + "||"
}

// InboundListenerName is `inbound|<containerPort>`; its inline route configuration has
// the same name.
func InboundListenerName(containerPort int) string {
	return "inbound|" + strconv.Itoa(containerPort)
}

// OutboundHTTPProxyName names the explicit HTTP proxy listener and its RDS route.
const OutboundHTTPProxyName = "outbound_http_proxy"

// UpstreamListenerName is `outbound|<port>|<fqdn>`, also the name of its RDS route.
func UpstreamListenerName(port int, host string) string {
	return "outbound|" + strconv.Itoa(port) + "|" + host
}

// VirtualHostName is `<fqdn>:<port>`.
func VirtualHostName(host string, port int) string {
	return host + ":" + strconv.Itoa(port)
}

// DefaultRouteName names the catch-all route of a service port without VirtualService.
const DefaultRouteName = "default"

// splitUpstreamKey parses a model.UpstreamKey ("<fqdn>:<port>").
func splitUpstreamKey(key string) (string, int, bool) {
	i := strings.LastIndexByte(key, ':')
	if i <= 0 {
		return "", 0, false
	}
	port, err := strconv.Atoi(key[i+1:])
	if err != nil {
		return "", 0, false
	}
	return key[:i], port, true
}

func itoa(n int) string { return strconv.Itoa(n) }
