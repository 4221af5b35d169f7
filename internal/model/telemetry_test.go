package model

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTelemetryFor(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	b := func(v bool) *bool { return &v }
	mesh := &Mesh{Telemetries: []*Telemetry{
		{NamespacedName: NamespacedName{Namespace: "istio-system", Name: "mesh"}, SamplingPercent: f(10), DropLabels: []string{"source_principal"}, AccessLogDisabled: b(true)},
		{NamespacedName: NamespacedName{Namespace: "default", Name: "ns"}, AccessLogDisabled: b(false), DropLabels: []string{"destination_principal"}},
		{NamespacedName: NamespacedName{Namespace: "default", Name: "ns-later"}, AccessLogDisabled: b(true)}, // same level: the first wins
		{NamespacedName: NamespacedName{Namespace: "default", Name: "frontend"}, Selector: map[string]string{"app": "frontend"}, SamplingPercent: f(100)},
		{NamespacedName: NamespacedName{Namespace: "default", Name: "quiet"}, Selector: map[string]string{"app": "quiet"}, DisableSpanReporting: b(true), SamplingPercent: f(50)},
		{NamespacedName: NamespacedName{Namespace: "other", Name: "elsewhere"}, SamplingPercent: f(1)},
	}}
	tests := []struct {
		name     string
		workload NamespacedName
		labels   map[string]string
		want     EffectiveTelemetry
	}{
		{"workload level wins for sampling, namespace for access log, drops add up", NamespacedName{Namespace: "default", Name: "frontend"}, map[string]string{"app": "frontend"},
			EffectiveTelemetry{SamplingPercent: f(100), DropLabels: []string{"destination_principal", "source_principal"},
				Sources: []NamespacedName{{Namespace: "default", Name: "frontend"}, {Namespace: "default", Name: "ns"}, {Namespace: "istio-system", Name: "mesh"}}}},
		{"namespace then root", NamespacedName{Namespace: "default", Name: "catalog"}, map[string]string{"app": "catalog"},
			EffectiveTelemetry{SamplingPercent: f(10), DropLabels: []string{"destination_principal", "source_principal"},
				Sources: []NamespacedName{{Namespace: "default", Name: "ns"}, {Namespace: "istio-system", Name: "mesh"}}}},
		{"disableSpanReporting samples nothing", NamespacedName{Namespace: "default", Name: "q"}, map[string]string{"app": "quiet"},
			EffectiveTelemetry{SamplingPercent: f(0), DropLabels: []string{"destination_principal", "source_principal"},
				Sources: []NamespacedName{{Namespace: "default", Name: "quiet"}, {Namespace: "default", Name: "ns"}, {Namespace: "istio-system", Name: "mesh"}}}},
		{"root only", NamespacedName{Namespace: "bar", Name: "x"}, nil,
			EffectiveTelemetry{SamplingPercent: f(10), AccessLogDisabled: true, DropLabels: []string{"source_principal"},
				Sources: []NamespacedName{{Namespace: "istio-system", Name: "mesh"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, mesh.TelemetryFor(tt.workload, tt.labels)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
