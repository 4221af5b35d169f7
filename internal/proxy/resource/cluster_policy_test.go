package resource

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func edsCluster(mod func(c *clusterv3.Cluster)) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 "c",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
	}
	mod(c)
	return c
}

func TestClusterPolicy(t *testing.T) {
	d := NewDecoder()
	full := edsCluster(func(c *clusterv3.Cluster) {
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{
			SlowStartConfig: &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: durationpb.New(30 * time.Second), Aggression: &corev3.RuntimeDouble{DefaultValue: 2, RuntimeKey: "k"}},
		}}
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 30}}
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxConnections: wrapperspb.UInt32(1), MaxPendingRequests: wrapperspb.UInt32(2)}}}
		c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3), EnforcingSuccessRate: wrapperspb.UInt32(0), BaseEjectionTime: durationpb.New(time.Second)}
		c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{KeepaliveTime: wrapperspb.UInt32(60)}}
		c.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{SkeinLBMetadataKey: {Fields: map[string]*structpb.Value{"algorithm": structpb.NewStringValue("peak-ewma"), "decay": structpb.NewStringValue("5s")}}}}
	})
	got, err := d.Cluster(mustAny(t, full))
	if err != nil {
		t.Fatal(err)
	}
	want := ClusterPolicy{
		ChoiceCount:    2,
		PanicThreshold: 30,
		SlowStart:      &SlowStart{Window: 30 * time.Second, Aggression: 2, MinWeightPercent: 10},
		Thresholds:     &Thresholds{MaxConnections: 1, MaxPendingRequests: 2, MaxRequests: DefaultMaxRequests, MaxRetries: DefaultMaxRetries},
		Outlier: &OutlierDetection{Consecutive5xx: 3, EnforcingConsecutive5xx: 100, ConsecutiveGateway: 5,
			Interval: 10 * time.Second, BaseEjectionTime: time.Second, MaxEjectionTime: 300 * time.Second, MaxEjectionPercent: 10},
		KeepAlive: &TCPKeepalive{Time: time.Minute},
		PeakEWMA:  &PeakEWMA{Decay: 5 * time.Second, DefaultRTT: 30 * time.Millisecond},
	}
	if diff := cmp.Diff(want, got.Resource.Policy); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
	if l := (&ClusterPolicy{}).Limits(); l != DefaultThresholds {
		t.Errorf("no circuit_breakers: limits %+v, want Envoy's defaults", l)
	}

	bad := []struct {
		name string
		mod  func(c *clusterv3.Cluster)
		want string
	}{
		{"ring config on round robin", func(c *clusterv3.Cluster) {
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{}}
		}, "ring_hash_lb_config needs lb_policy RING_HASH"},
		{"maglev table not prime", func(c *clusterv3.Cluster) {
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(100)}}
		}, "must be a prime"},
		{"success rate left on", func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3)}
		}, "success-rate ejection is not supported"},
		{"enforcing above 100", func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0), EnforcingConsecutive_5Xx: wrapperspb.UInt32(101)}
		}, "enforcing_consecutive_5xx must be at most 100"},
		{"peak ewma on round robin", func(c *clusterv3.Cluster) {
			c.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{SkeinLBMetadataKey: {Fields: map[string]*structpb.Value{"algorithm": structpb.NewStringValue("peak-ewma")}}}}
		}, "peak-ewma refines lb_policy LEAST_REQUEST"},
		{"unknown metadata", func(c *clusterv3.Cluster) {
			c.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": {}}}
		}, `metadata.filter_metadata["istio"] unsupported`},
		{"high priority breaker", func(c *clusterv3.Cluster) {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{Priority: corev3.RoutingPriority_HIGH}}}
		}, "only DEFAULT is supported"},
		{"panic threshold above 100", func(c *clusterv3.Cluster) {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 120}}
		}, "healthy_panic_threshold must be in 0..100"},
		{"unsupported outlier field", func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0), SplitExternalLocalOriginErrors: true}
		}, "split_external_local_origin_errors"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Cluster(mustAny(t, edsCluster(tc.mod)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// FuzzCluster feeds arbitrary bytes as a Cluster: decoding the policy fields must never
// panic.
func FuzzCluster(f *testing.F) {
	seed, _ := proto.Marshal(edsCluster(func(c *clusterv3.Cluster) {
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(8)}}
		c.OutlierDetection = &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0), Interval: durationpb.New(time.Second)}
	}))
	f.Add(seed)
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, data []byte) {
		a := mustAny(t, &clusterv3.Cluster{})
		a.Value = data
		_, _ = d.Cluster(a)
	})
}
