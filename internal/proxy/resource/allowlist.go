package resource

import "skein.dev/skein/internal/proxy/validate"

// Every field the proxy accepts, mirroring docs/XDS.md. Adding support for a field means
// adding it here and reading it in the matching unmarshal_*.go file.
var allowedFields = []string{
	// Shared types.
	"google.protobuf.Duration.seconds",
	"google.protobuf.Duration.nanos",
	"google.protobuf.UInt32Value.value",
	"google.protobuf.BoolValue.value",
	"envoy.config.core.v3.Address.socket_address",
	"envoy.config.core.v3.SocketAddress.address",
	"envoy.config.core.v3.SocketAddress.port_value",
	"envoy.config.core.v3.ConfigSource.ads",
	"envoy.config.core.v3.ConfigSource.resource_api_version",
	"envoy.type.matcher.v3.RegexMatcher.regex",
	"envoy.type.matcher.v3.StringMatcher.exact",
	"envoy.type.matcher.v3.StringMatcher.prefix",
	"envoy.type.matcher.v3.StringMatcher.suffix",
	"envoy.type.matcher.v3.StringMatcher.contains",
	"envoy.type.matcher.v3.StringMatcher.safe_regex",
	"envoy.type.matcher.v3.StringMatcher.ignore_case",

	// Listener.
	"envoy.config.listener.v3.Listener.name",
	"envoy.config.listener.v3.Listener.address",
	"envoy.config.listener.v3.Listener.filter_chains",
	"envoy.config.listener.v3.Listener.stat_prefix",
	"envoy.config.listener.v3.Listener.traffic_direction",
	"envoy.config.listener.v3.FilterChain.filters",
	"envoy.config.listener.v3.Filter.name",
	"envoy.config.listener.v3.Filter.typed_config",
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.stat_prefix",
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.codec_type",
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.rds",
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.route_config",
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.http_filters",
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds.config_source",
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds.route_config_name",
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.name",
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.typed_config",
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.stat_prefix",
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.cluster",
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.weighted_clusters",
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.clusters",
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight.name",
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight.weight",

	// RouteConfiguration.
	"envoy.config.route.v3.RouteConfiguration.name",
	"envoy.config.route.v3.RouteConfiguration.virtual_hosts",
	"envoy.config.route.v3.VirtualHost.name",
	"envoy.config.route.v3.VirtualHost.domains",
	"envoy.config.route.v3.VirtualHost.routes",
	"envoy.config.route.v3.Route.name",
	"envoy.config.route.v3.Route.match",
	"envoy.config.route.v3.Route.route",
	"envoy.config.route.v3.RouteMatch.prefix",
	"envoy.config.route.v3.RouteMatch.path",
	"envoy.config.route.v3.RouteMatch.safe_regex",
	"envoy.config.route.v3.RouteMatch.case_sensitive",
	"envoy.config.route.v3.RouteMatch.headers",
	"envoy.config.route.v3.HeaderMatcher.name",
	"envoy.config.route.v3.HeaderMatcher.string_match",
	"envoy.config.route.v3.HeaderMatcher.present_match",
	"envoy.config.route.v3.HeaderMatcher.invert_match",
	"envoy.config.route.v3.RouteAction.cluster",
	"envoy.config.route.v3.RouteAction.weighted_clusters",
	"envoy.config.route.v3.RouteAction.timeout",
	"envoy.config.route.v3.WeightedCluster.clusters",
	"envoy.config.route.v3.WeightedCluster.ClusterWeight.name",
	"envoy.config.route.v3.WeightedCluster.ClusterWeight.weight",

	// Cluster.
	"envoy.config.cluster.v3.Cluster.name",
	"envoy.config.cluster.v3.Cluster.type",
	"envoy.config.cluster.v3.Cluster.eds_cluster_config",
	"envoy.config.cluster.v3.Cluster.load_assignment",
	"envoy.config.cluster.v3.Cluster.connect_timeout",
	"envoy.config.cluster.v3.Cluster.lb_policy",
	"envoy.config.cluster.v3.Cluster.typed_extension_protocol_options",
	"envoy.config.cluster.v3.Cluster.EdsClusterConfig.eds_config",
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config",
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig.http_protocol_options",
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig.http2_protocol_options",
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.use_downstream_protocol_config",
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.UseDownstreamHttpConfig.http_protocol_options",
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.UseDownstreamHttpConfig.http2_protocol_options",

	// ClusterLoadAssignment.
	"envoy.config.endpoint.v3.ClusterLoadAssignment.cluster_name",
	"envoy.config.endpoint.v3.ClusterLoadAssignment.endpoints",
	"envoy.config.endpoint.v3.LocalityLbEndpoints.locality",
	"envoy.config.endpoint.v3.LocalityLbEndpoints.lb_endpoints",
	"envoy.config.core.v3.Locality.region",
	"envoy.config.core.v3.Locality.zone",
	"envoy.config.core.v3.Locality.sub_zone",
	"envoy.config.endpoint.v3.LbEndpoint.endpoint",
	"envoy.config.endpoint.v3.LbEndpoint.health_status",
	"envoy.config.endpoint.v3.LbEndpoint.load_balancing_weight",
	"envoy.config.endpoint.v3.Endpoint.address",
}

// Message types allowed inside typed_config / typed_extension_protocol_options.
var allowedAnyTypes = []string{
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
	"envoy.extensions.filters.http.router.v3.Router",
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
}

// Allowlist is the proxy's accepted xDS subset. It is immutable after construction.
func Allowlist() *validate.Allowlist {
	return validate.NewAllowlist(allowedFields, allowedAnyTypes)
}
