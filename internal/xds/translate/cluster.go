package translate

import (
	"sort"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"skein.dev/skein/internal/model"
)

// ConnectTimeout is every cluster's connect_timeout (Istio's default).
const ConnectTimeout = 10 * time.Second

// httpProtocolOptionsKey is the typed_extension_protocol_options key Envoy reads.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// clusters returns one EDS cluster per service port and per DestinationRule subset, and
// for a sidecar one STATIC inbound cluster per container port it serves.
func (b *builder) clusters() []types.Resource {
	var out []*cluster.Cluster
	for _, sp := range b.ports {
		dr := b.idx.rules[sp.host]
		out = append(out, b.outboundCluster(sp, ""))
		if dr == nil {
			continue
		}
		for i := range dr.Subsets {
			out = append(out, b.outboundCluster(sp, dr.Subsets[i].Name))
		}
	}
	for _, cp := range b.inboundPorts() {
		out = append(out, b.inboundCluster(cp))
	}
	if b.capture() {
		out = append(out, b.captureClusters()...)
	}
	return sortByName(out)
}

// outboundCluster, with its upstream TLS, is the same for every sidecar (and for
// every generic client, which get no TLS): built once per Index and kind of node, and
// never modified afterwards.
func (b *builder) outboundCluster(sp servicePort, subset string) *cluster.Cluster {
	key := sp.cluster
	if subset != "" {
		key = OutboundClusterName(sp.port.Port, subset, sp.host)
	}
	if b.secure() {
		key += "|tls"
	}
	key += b.entryClusterVariant(sp)
	return shared(b, b.idx.clusters, key, func() *cluster.Cluster {
		tp := b.trafficPolicyFor(sp, subset)
		if h2Upgrade(tp, sp.port.Protocol) {
			sp.port.Protocol = model.ProtocolHTTP2 // protocol options and ALPN
		}
		c := b.newOutboundCluster(sp, subset)
		b.applyTrafficPolicy(c, tp, sp.port.Protocol)
		b.applyUpstreamTLS(c, sp, subset)
		return c
	})
}

func (b *builder) newOutboundCluster(sp servicePort, subset string) *cluster.Cluster {
	c := &cluster.Cluster{
		Name:                          OutboundClusterName(sp.port.Port, subset, sp.host),
		ClusterDiscoveryType:          &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:              &cluster.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()},
		ConnectTimeout:                durationpb.New(ConnectTimeout),
		TypedExtensionProtocolOptions: b.outboundProtocolOptions(sp.port.Protocol),
	}
	if sp.svc.Entry != nil {
		b.entryCluster(c, sp, subsetLabels(b.idx.rules[sp.host], subset))
	}
	return c
}

// subsetLabels are the labels of a DestinationRule subset; nil for no subset.
func subsetLabels(dr *model.DestinationRule, subset string) map[string]string {
	if dr == nil || subset == "" {
		return nil
	}
	for _, ss := range dr.Subsets {
		if ss.Name == subset {
			return ss.Labels
		}
	}
	return nil
}

// outboundProtocolOptions: a port without a declared protocol is sniffed in capture
// mode, so its cluster speaks whatever HTTP version the client spoke (Istio's choice);
// elsewhere the declared protocol decides.
func (b *builder) outboundProtocolOptions(p model.Protocol) map[string]*anypb.Any {
	if p == model.ProtocolUnknown && b.capture() {
		return b.inboundProtocolOptions(model.ProtocolHTTP)
	}
	return b.protocolOptions(p)
}

// inboundCluster sends to the app on the proxy's IP: at the container port, or where
// the runtime says the app really listens (Proxy.AppPorts, each replica its own port).
func (b *builder) inboundCluster(containerPort int) *cluster.Cluster {
	name := InboundClusterName(containerPort)
	appPort := containerPort
	if p, ok := b.proxy.AppPorts[containerPort]; ok && p > 0 {
		appPort = p
	}
	appIP := b.proxy.IP
	protocol := b.inboundProtocol(containerPort)
	if b.capture() {
		// The app shares the sidecar's network namespace and listens on the container
		// port; loopback is never captured.
		appIP = "127.0.0.1"
		if protocol = b.declaredInboundProtocol(containerPort); protocol == model.ProtocolUnknown {
			protocol = model.ProtocolHTTP // sniffed: HTTP chains use the caller's version
		}
	}
	return &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(ConnectTimeout),
		LoadAssignment: &endpoint.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{lbEndpoint(appIP, appPort, nil)},
			}},
		},
		TypedExtensionProtocolOptions: b.inboundProtocolOptions(protocol),
	}
}

// protocolOptions pins the upstream HTTP version: HTTP/2 (h2c) for HTTP2 and gRPC
// ports, HTTP/1.1 for HTTP ports, nothing for TCP.
func (b *builder) protocolOptions(p model.Protocol) map[string]*anypb.Any {
	if !p.IsHTTP() {
		return nil
	}
	explicit := &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
			HttpProtocolOptions: &core.Http1ProtocolOptions{},
		},
	}
	if p.IsHTTP2() {
		explicit.ProtocolConfig = &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
			Http2ProtocolOptions: &core.Http2ProtocolOptions{},
		}
	}
	opts := &upstreamhttp.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: explicit},
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: b.toAny(opts)}
}

// inboundProtocolOptions: for HTTP ports the app is spoken to in the caller's HTTP
// version, as Istio's inbound clusters do, so a gRPC (HTTP/2) call that reaches a port
// declared plain HTTP is not downgraded to HTTP/1.1.
func (b *builder) inboundProtocolOptions(p model.Protocol) map[string]*anypb.Any {
	if !p.IsHTTP() {
		return nil
	}
	if p.IsHTTP2() {
		return b.protocolOptions(p)
	}
	opts := &upstreamhttp.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &upstreamhttp.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions:  &core.Http1ProtocolOptions{},
				Http2ProtocolOptions: &core.Http2ProtocolOptions{},
			},
		},
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: b.toAny(opts)}
}

func adsConfigSource() *core.ConfigSource {
	return &core.ConfigSource{
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
		ResourceApiVersion:    core.ApiVersion_V3,
	}
}

// inboundPorts lists the container ports a sidecar has inbound listeners (CaptureNone)
// or virtualInbound filter chains (CaptureIPTables) for.
func (b *builder) inboundPorts() []int {
	if b.proxy == nil {
		return nil
	}
	if b.capture() {
		var ports []int
		if w := b.workloads[b.proxy.Workload]; w != nil {
			for _, cp := range w.Ports {
				ports = append(ports, cp.ContainerPort)
			}
		}
		sort.Ints(ports)
		return ports
	}
	ports := make([]int, 0, len(b.proxy.InboundPorts))
	for cp := range b.proxy.InboundPorts {
		ports = append(ports, cp)
	}
	sort.Ints(ports)
	return ports
}

// inboundProtocol is the protocol of one of the proxy's container ports as CaptureNone
// treats it: the declared one, else TCP (nothing sniffs there).
func (b *builder) inboundProtocol(containerPort int) model.Protocol {
	if p := b.declaredInboundProtocol(containerPort); p != model.ProtocolUnknown {
		return p
	}
	return model.ProtocolTCP
}

// declaredInboundProtocol is the container port's appProtocol, else the protocol of a
// service port of the proxy's namespace that selects the proxy and targets that
// container port, else ProtocolUnknown.
func (b *builder) declaredInboundProtocol(containerPort int) model.Protocol {
	labels := b.proxy.Labels
	if w := b.workloads[b.proxy.Workload]; w != nil {
		for _, cp := range w.Ports {
			if cp.ContainerPort == containerPort && cp.AppProtocol != model.ProtocolUnknown {
				return cp.AppProtocol
			}
		}
		if len(labels) == 0 {
			labels = w.Labels
		}
	}
	for _, i := range b.idx.nsPorts[b.proxy.Workload.Namespace] {
		sp := b.allPorts[i]
		if sp.svc.Namespace != b.proxy.Workload.Namespace || !model.Selects(sp.svc.Selector, labels) {
			continue
		}
		if tp, ok := b.targetPort(sp.port, b.proxy.Workload); ok && tp == containerPort && sp.port.Protocol != model.ProtocolUnknown {
			return sp.port.Protocol
		}
	}
	return model.ProtocolUnknown
}
