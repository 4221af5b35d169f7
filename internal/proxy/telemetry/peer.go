package telemetry

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/streaminfo"
)

// PeerHeader carries a workload's identity between sidecars (skein's HTTP metadata
// exchange, the counterpart of Istio's x-envoy-peer-metadata): the client sidecar adds
// its own metadata to every outbound request, the server sidecar strips it and uses it
// as the source of its telemetry, and puts its own metadata on the response, which the
// client sidecar strips in turn. The value is base64 (standard, padded) of a JSON
// object {"workload","namespace","app","version"}. It is not a credential: principals
// come only from mutual TLS.
const PeerHeader = "X-Skein-Peer-Metadata"

// unknown is Istio's value for a label whose value cannot be known.
const unknown = "unknown"

// LocalPeer describes the proxy's own workload from its node metadata.
func LocalPeer(p *model.Proxy) *streaminfo.Peer {
	if p == nil {
		return &streaminfo.Peer{}
	}
	return &streaminfo.Peer{
		Workload:  p.Workload.Name,
		Namespace: p.Workload.Namespace,
		App:       p.Labels["app"],
		Version:   p.Labels["version"],
	}
}

// EncodePeer renders a peer as the PeerHeader value.
func EncodePeer(p *streaminfo.Peer) string {
	c := *p
	c.Principal = "" // never sent: a header proves nothing
	b, _ := json.Marshal(c)
	return base64.StdEncoding.EncodeToString(b)
}

// maxInterned bounds the peer cache: header values are chosen by callers.
const maxInterned = 4096

// Peers decodes PeerHeader values, interning the result so a steady set of callers
// costs one map lookup per request and the *Peer can serve as a map key.
type Peers struct {
	mu    sync.Mutex
	cache atomic.Pointer[map[string]*streaminfo.Peer] // copy on write
}

// Decode returns the peer of a header value; nil when empty or malformed.
func (ps *Peers) Decode(v string) *streaminfo.Peer {
	if v == "" {
		return nil
	}
	return ps.intern(v, func() *streaminfo.Peer { return decodePeer(v) })
}

// FromPrincipal is the peer a verified SPIFFE ID tells of when no metadata was
// exchanged (TCP): its namespace, from spiffe://<td>/ns/<ns>/sa/<sa>; the workload,
// app and version stay unknown (a service account may run several workloads). nil
// for an empty or non-Istio-shaped ID.
func (ps *Peers) FromPrincipal(id string) *streaminfo.Peer {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return nil
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" || parts[2] == "" {
		return nil
	}
	// The key cannot collide with a header value: base64 has no ':'.
	return ps.intern("spiffe:"+parts[2], func() *streaminfo.Peer { return &streaminfo.Peer{Namespace: parts[2]} })
}

func (ps *Peers) intern(v string, build func() *streaminfo.Peer) *streaminfo.Peer {
	if m := ps.cache.Load(); m != nil {
		if p, ok := (*m)[v]; ok {
			return p
		}
	}
	p := build()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	old := ps.cache.Load()
	n := 0
	if old != nil {
		n = len(*old)
		if q, ok := (*old)[v]; ok {
			return q
		}
	}
	if n >= maxInterned {
		return p
	}
	next := make(map[string]*streaminfo.Peer, n+1)
	if old != nil {
		for k, q := range *old {
			next[k] = q
		}
	}
	next[v] = p
	ps.cache.Store(&next)
	return p
}

func decodePeer(v string) *streaminfo.Peer {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil
	}
	var p streaminfo.Peer
	if err := json.Unmarshal(b, &p); err != nil {
		return nil
	}
	p.Principal = ""
	return &p
}

// Services interns destination services by cluster name or authority.
type Services struct {
	Suffix string // cluster domain, "svc.cluster.local" when empty
	mu     sync.Mutex
	cache  atomic.Pointer[map[string]*streaminfo.Service]
}

// ForCluster returns the service of an outbound cluster name
// (outbound|<port>|<subset>|<fqdn>); nil for other clusters.
func (s *Services) ForCluster(cluster string) *streaminfo.Service {
	return s.lookup(cluster, func() *streaminfo.Service {
		switch cluster {
		case "PassthroughCluster", "BlackHoleCluster", "InboundPassthroughClusterIpv4":
			// Traffic to no mesh service (transparent capture): Istio names it after
			// the cluster in destination_service_name.
			return &streaminfo.Service{Host: cluster, Name: cluster}
		}
		parts := strings.Split(cluster, "|")
		if len(parts) != 4 || parts[0] != "outbound" || parts[3] == "" {
			return nil
		}
		return s.fromHost(parts[3], "")
	})
}

// ForAuthority returns the service an inbound request was addressed to, from its
// Host: a short name is completed with the proxy's namespace, as DNS search paths do.
func (s *Services) ForAuthority(authority, namespace string) *streaminfo.Service {
	if authority == "" {
		return nil
	}
	return s.lookup("@"+namespace+"@"+authority, func() *streaminfo.Service {
		host := authority
		if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.Contains(host[i:], "]") {
			host = host[:i]
		}
		return s.fromHost(strings.ToLower(host), namespace)
	})
}

func (s *Services) fromHost(host, namespace string) *streaminfo.Service {
	suffix := s.Suffix
	if suffix == "" {
		suffix = model.DefaultDomainSuffix
	}
	parts := strings.Split(host, ".")
	switch {
	case len(parts) == 1 && namespace != "":
		return &streaminfo.Service{Host: host + "." + namespace + "." + suffix, Name: host, Namespace: namespace}
	case len(parts) == 2:
		return &streaminfo.Service{Host: host + "." + suffix, Name: parts[0], Namespace: parts[1]}
	case len(parts) == 3 && parts[2] == "svc":
		return &streaminfo.Service{Host: host + "." + strings.TrimPrefix(suffix, "svc."), Name: parts[0], Namespace: parts[1]}
	case strings.HasSuffix(host, "."+suffix) && len(parts) >= 3:
		return &streaminfo.Service{Host: host, Name: parts[0], Namespace: parts[1]}
	}
	return &streaminfo.Service{Host: host, Name: host, Namespace: unknown}
}

func (s *Services) lookup(key string, build func() *streaminfo.Service) *streaminfo.Service {
	if m := s.cache.Load(); m != nil {
		if v, ok := (*m)[key]; ok {
			return v
		}
	}
	v := build()
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cache.Load()
	n := 0
	if old != nil {
		n = len(*old)
	}
	if n >= maxInterned {
		return v
	}
	next := make(map[string]*streaminfo.Service, n+1)
	if old != nil {
		for k, q := range *old {
			next[k] = q
		}
	}
	next[key] = v
	s.cache.Store(&next)
	return v
}
