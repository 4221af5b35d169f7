package skein

import (
	"fmt"
	"sort"
	"strings"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// CaptureAnnotationPrefix is the prefix of Istio's pod annotations that change the
// traffic capture rules; skein reads them from a Workload's metadata.annotations.
const CaptureAnnotationPrefix = "traffic.sidecar.istio.io/"

// Capture annotations skein implements (Istio's names and value syntax).
const (
	AnnotationIncludeInboundPorts     = CaptureAnnotationPrefix + "includeInboundPorts"
	AnnotationExcludeInboundPorts     = CaptureAnnotationPrefix + "excludeInboundPorts"
	AnnotationIncludeOutboundPorts    = CaptureAnnotationPrefix + "includeOutboundPorts"
	AnnotationExcludeOutboundPorts    = CaptureAnnotationPrefix + "excludeOutboundPorts"
	AnnotationIncludeOutboundIPRanges = CaptureAnnotationPrefix + "includeOutboundIPRanges"
	AnnotationExcludeOutboundIPRanges = CaptureAnnotationPrefix + "excludeOutboundIPRanges"
)

// captureOverrides reads the capture annotations. Other annotations are ignored, as
// Kubernetes does; an unknown traffic.sidecar.istio.io/ key is an error, so a typo or
// an Istio feature skein lacks (interceptionMode TPROXY, kubevirtInterfaces) is not
// silently dropped.
func captureOverrides(annotations map[string]string) (*model.CaptureOverrides, []strict.Issue) {
	var issues []strict.Issue
	var out model.CaptureOverrides
	set := false
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, CaptureAnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := annotations[k]
		path := strict.Key("metadata.annotations", k)
		var err error
		switch k {
		case AnnotationIncludeInboundPorts:
			var ps model.PortSet
			ps, err = model.ParsePortSet(v)
			out.IncludeInboundPorts = &ps
		case AnnotationExcludeInboundPorts:
			out.ExcludeInboundPorts, err = model.ParsePorts(v)
		case AnnotationIncludeOutboundPorts:
			out.IncludeOutboundPorts, err = model.ParsePorts(v)
		case AnnotationExcludeOutboundPorts:
			out.ExcludeOutboundPorts, err = model.ParsePorts(v)
		case AnnotationIncludeOutboundIPRanges:
			var ps model.PrefixSet
			ps, err = model.ParsePrefixSet(v)
			out.IncludeOutboundIPRanges = &ps
		case AnnotationExcludeOutboundIPRanges:
			out.ExcludeOutboundIPRanges, err = model.ParsePrefixes(v)
		default:
			issues = append(issues, strict.Issue{Path: path, Msg: fmt.Sprintf(
				"annotation %s is not supported by skein; supported: includeInboundPorts, excludeInboundPorts, includeOutboundPorts, excludeOutboundPorts, includeOutboundIPRanges, excludeOutboundIPRanges", k)})
			continue
		}
		if err != nil {
			issues = append(issues, strict.Issue{Path: path, Msg: err.Error()})
		}
		set = true
	}
	if !set {
		return nil, issues
	}
	return &out, issues
}
