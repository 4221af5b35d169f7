package model

// Telemetry is an Istio telemetry.istio.io Telemetry object in model terms: the parts
// skein implements. A nil field is not set at this level and inherits from a less
// specific Telemetry (Istio's hierarchy: workload selector, then namespace, then the
// root namespace).
type Telemetry struct {
	NamespacedName
	Selector map[string]string `json:",omitempty"`
	// SamplingPercent is tracing.randomSamplingPercentage (0-100).
	SamplingPercent *float64 `json:",omitempty"`
	// DisableSpanReporting is tracing.disableSpanReporting: spans are not exported
	// (trace context is still propagated).
	DisableSpanReporting *bool `json:",omitempty"`
	// AccessLogDisabled is accessLogging.disabled.
	AccessLogDisabled *bool `json:",omitempty"`
	// DropLabels are metrics.overrides tagOverrides with operation REMOVE (for every
	// istio_* metric, both reporters).
	DropLabels []string `json:",omitempty"`
	Source     Source   `json:"-"`
}

// EffectiveTelemetry is what applies to one workload after the hierarchy is merged.
type EffectiveTelemetry struct {
	// SamplingPercent, when set, overrides the sidecars' default sampling.
	SamplingPercent   *float64
	AccessLogDisabled bool
	// DropLabels is the union of every level's removals, sorted.
	DropLabels []string
	// Sources are the Telemetry objects that applied, most specific first.
	Sources []NamespacedName
}

// TelemetryFor merges the Telemetry objects that apply to a workload: per field, the
// most specific level that sets it wins (a workload-selector object over its
// namespace's object without selector, over the root namespace's object without
// selector); within a level the first object in file order (Istio: the oldest).
// Label removals add up across levels.
func (m *Mesh) TelemetryFor(workload NamespacedName, labels map[string]string) EffectiveTelemetry {
	root := m.RootNamespaceOrDefault()
	var levels [3]*Telemetry // workload, namespace, root
	for _, t := range m.Telemetries {
		var lvl int
		switch {
		case t.Namespace == workload.Namespace && len(t.Selector) > 0:
			if !PolicySelects(root, t.Namespace, t.Selector, workload, labels) {
				continue
			}
			lvl = 0
		case t.Namespace == workload.Namespace:
			lvl = 1
		case t.Namespace == root && len(t.Selector) == 0:
			lvl = 2
		default:
			continue
		}
		if levels[lvl] == nil {
			levels[lvl] = t
		}
	}
	var out EffectiveTelemetry
	drop := map[string]bool{}
	var spans *bool
	var logOff *bool
	for _, t := range levels {
		if t == nil {
			continue
		}
		out.Sources = append(out.Sources, t.NamespacedName)
		if out.SamplingPercent == nil && t.SamplingPercent != nil {
			v := *t.SamplingPercent
			out.SamplingPercent = &v
		}
		if spans == nil && t.DisableSpanReporting != nil {
			spans = t.DisableSpanReporting
		}
		if logOff == nil && t.AccessLogDisabled != nil {
			logOff = t.AccessLogDisabled
		}
		for _, l := range t.DropLabels {
			drop[l] = true
		}
	}
	if spans != nil && *spans {
		// No span is reported: sampling nothing still propagates the context.
		zero := 0.0
		out.SamplingPercent = &zero
	}
	out.AccessLogDisabled = logOff != nil && *logOff
	out.DropLabels = SortedKeys(drop)
	return out
}
