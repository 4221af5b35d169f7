package skein

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"skein.dev/skein/internal/model"
)

func TestCaptureOverrides(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]string
		want    *model.CaptureOverrides
		wantErr string
	}{
		{name: "none", in: map[string]string{"other": "x"}, want: nil},
		{
			name: "all kinds",
			in: map[string]string{
				AnnotationIncludeInboundPorts:     "8080,9090",
				AnnotationExcludeInboundPorts:     "22",
				AnnotationIncludeOutboundPorts:    "",
				AnnotationExcludeOutboundPorts:    "5432, 3306",
				AnnotationIncludeOutboundIPRanges: "*",
				AnnotationExcludeOutboundIPRanges: "10.0.0.0/8,192.168.0.1",
			},
			want: &model.CaptureOverrides{
				IncludeInboundPorts:     &model.PortSet{Ports: []int{8080, 9090}},
				ExcludeInboundPorts:     []int{22},
				ExcludeOutboundPorts:    []int{3306, 5432},
				IncludeOutboundIPRanges: &model.PrefixSet{All: true},
				ExcludeOutboundIPRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.1/32")},
			},
		},
		{name: "bad port", in: map[string]string{AnnotationExcludeOutboundPorts: "70000"}, wantErr: "excludeOutboundPorts\"]: invalid list"},
		{name: "bad cidr", in: map[string]string{AnnotationExcludeOutboundIPRanges: "10.0.0.0/33"}, wantErr: "not an IPv4 CIDR"},
		{name: "unknown", in: map[string]string{CaptureAnnotationPrefix + "interceptionMode": "TPROXY"}, wantErr: "not supported by skein"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, issues := captureOverrides(tt.in)
			if tt.wantErr != "" {
				if len(issues) != 1 || !strings.Contains(issues[0].String(), tt.wantErr) {
					t.Fatalf("issues = %v, want one containing %q", issues, tt.wantErr)
				}
				return
			}
			if len(issues) > 0 {
				t.Fatalf("unexpected issues %v", issues)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
