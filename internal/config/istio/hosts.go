package istio

import (
	"net/netip"
	"strings"
)

// ResolveHost turns a host as written in an object of namespace ns into a fully
// qualified name the way DNS search paths in a pod would, with suffix the service
// domain (svc.cluster.local): "catalog" is catalog.<ns>.<suffix>, "catalog.other" is
// catalog.other.<suffix>, "catalog.other.svc" is completed to the suffix, and anything
// longer (or an IP, or "*") is kept.
func ResolveHost(host, ns, suffix string) string {
	if host == "" || host == "*" {
		return host
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return host
	}
	switch strings.Count(host, ".") {
	case 0:
		return host + "." + ns + "." + suffix
	case 1:
		return host + "." + suffix
	case 2:
		if first, rest, ok := strings.Cut(suffix, "."); ok && strings.HasSuffix(host, "."+first) {
			return host + "." + rest
		}
	}
	return host
}

// inCluster reports whether a resolved host names a service of the cluster domain.
func inCluster(host, suffix string) bool {
	return strings.HasSuffix(host, "."+suffix)
}
