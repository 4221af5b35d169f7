package istio

import (
	telemetry "istio.io/api/telemetry/v1alpha1"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
	proxytelemetry "skein.dev/skein/internal/proxy/telemetry"
)

// The Telemetry fields skein implements. Not listed, so rejected as "not supported
// yet": targetRef(s), providers (skein has one tracing exporter, set by skein up's
// --tracing-* flags, and one metrics and one access log sink), tracing match,
// customTags, useRequestIdForTraceSampling, enableIstioTags,
// disableContextPropagation, accessLogging match and filter, metrics
// reportingInterval, overrides disabled and tag values (UPSERT).
func init() {
	allowFields(
		"istio.telemetry.v1alpha1.Telemetry.selector",
		"istio.telemetry.v1alpha1.Telemetry.tracing",
		"istio.telemetry.v1alpha1.Telemetry.access_logging",
		"istio.telemetry.v1alpha1.Telemetry.metrics",
		"istio.telemetry.v1alpha1.Tracing.random_sampling_percentage",
		"istio.telemetry.v1alpha1.Tracing.disable_span_reporting",
		"istio.telemetry.v1alpha1.AccessLogging.disabled",
		"istio.telemetry.v1alpha1.Metrics.overrides",
		"istio.telemetry.v1alpha1.MetricsOverrides.match",
		"istio.telemetry.v1alpha1.MetricsOverrides.tag_overrides",
		"istio.telemetry.v1alpha1.MetricSelector.metric",
		"istio.telemetry.v1alpha1.MetricSelector.mode",
		"istio.telemetry.v1alpha1.MetricsOverrides.TagOverride.operation",
		"google.protobuf.DoubleValue.value",
		"google.protobuf.BoolValue.value",
	)
}

// Telemetry translates a checked telemetry.istio.io Telemetry of the object nn. Within
// one object, a later list entry overrides an earlier one for the same setting.
func Telemetry(nn model.NamespacedName, spec *telemetry.Telemetry) (*model.Telemetry, []strict.Issue) {
	var is issues
	out := &model.Telemetry{NamespacedName: nn}
	labels := spec.GetSelector().GetMatchLabels()
	for _, k := range model.SortedKeys(labels) {
		path := strict.Key("spec.selector.matchLabels", k)
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			is.add(path, "invalid label key %q: %s", k, msgs[0])
		}
		if msgs := validation.IsValidLabelValue(labels[k]); len(msgs) > 0 {
			is.add(path, "invalid label value %q: %s", labels[k], msgs[0])
		}
	}
	if len(labels) > 0 {
		out.Selector = labels
	}
	for i, t := range spec.GetTracing() {
		path := strict.Index("spec.tracing", i)
		if p := t.GetRandomSamplingPercentage(); p != nil {
			v := p.GetValue()
			if v < 0 || v > 100 {
				is.add(path+".randomSamplingPercentage", "%v is out of range 0..100", v)
			}
			out.SamplingPercent = &v
		}
		if d := t.GetDisableSpanReporting(); d != nil {
			v := d.GetValue()
			out.DisableSpanReporting = &v
		}
	}
	for _, a := range spec.GetAccessLogging() {
		if d := a.GetDisabled(); d != nil {
			v := d.GetValue()
			out.AccessLogDisabled = &v
		}
	}
	drop := map[string]bool{}
	for i, m := range spec.GetMetrics() {
		for j, o := range m.GetOverrides() {
			path := strict.Index(strict.Index("spec.metrics", i)+".overrides", j)
			if sel := o.GetMatch(); sel != nil {
				if sel.GetMetric() != telemetry.MetricSelector_ALL_METRICS {
					is.add(path+".match.metric", "only ALL_METRICS is supported: skein removes a label from every istio_* metric")
				}
				if sel.GetMode() != telemetry.WorkloadMode_CLIENT_AND_SERVER {
					is.add(path+".match.mode", "only CLIENT_AND_SERVER is supported: skein removes a label on both reporters")
				}
			}
			for _, name := range model.SortedKeys(o.GetTagOverrides()) {
				tpath := strict.Key(path+".tagOverrides", name)
				if o.GetTagOverrides()[name].GetOperation() != telemetry.MetricsOverrides_TagOverride_REMOVE {
					is.add(tpath+".operation", "only REMOVE is supported (UPSERT needs tag value expressions)")
					continue
				}
				if err := proxytelemetry.ValidateDropLabels([]string{name}); err != nil {
					is.add(tpath, "%v", err)
					continue
				}
				drop[name] = true
			}
		}
	}
	out.DropLabels = model.SortedKeys(drop)
	return out, is
}
