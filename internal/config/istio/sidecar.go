package istio

import (
	"strconv"
	"strings"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// sidecarFields are the Sidecar fields skein implements (merged into supportedFields):
// the workload selector and one egress listener's hosts. Ingress listeners, egress
// ports, bind and capture modes, outboundTrafficPolicy and connection pools are
// rejected by name.
var sidecarFields = []string{
	"istio.networking.v1alpha3.Sidecar.workload_selector",
	"istio.networking.v1alpha3.Sidecar.egress",
	"istio.networking.v1alpha3.WorkloadSelector.labels",
	"istio.networking.v1alpha3.IstioEgressListener.hosts",
}

// Sidecar translates a checked Sidecar spec of the object nn. Each egress host must be
// "namespace/dnsName" as Istio requires: namespace a name, "*", "." or "~"; dnsName "*",
// "*.suffix" or a fully qualified name (short names are refused: Istio does not expand
// them here either, and a silent mismatch would hide a service).
func Sidecar(nn model.NamespacedName, spec *networking.Sidecar) (*model.Sidecar, []strict.Issue) {
	var is issues
	out := &model.Sidecar{NamespacedName: nn, WorkloadSelector: spec.GetWorkloadSelector().GetLabels()}
	if spec.GetWorkloadSelector() != nil && len(out.WorkloadSelector) == 0 {
		is.add("spec.workloadSelector.labels", "labels are required when workloadSelector is set")
	}
	switch n := len(spec.GetEgress()); {
	case n == 0:
		is.add("spec.egress", "egress is required: skein uses a Sidecar only to scope which services a proxy is configured for")
	case n > 1:
		is.add("spec.egress", "only one egress listener (without port) is supported yet, got %d", n)
	}
	for i, e := range spec.GetEgress() {
		path := strict.Field(strict.Index("spec.egress", i), "hosts")
		if len(e.GetHosts()) == 0 {
			is.add(path, "at least one host is required")
		}
		for j, h := range e.GetHosts() {
			if msg := checkEgressHost(h); msg != "" {
				is.add(strict.Index(path, j), "%s", msg)
				continue
			}
			out.EgressHosts = append(out.EgressHosts, h)
		}
	}
	return out, is
}

func checkEgressHost(h string) string {
	ns, dns, ok := strings.Cut(h, "/")
	if !ok || ns == "" || dns == "" {
		return "host " + quote(h) + " must be namespace/dnsName, e.g. \"./*\" or \"istio-system/*\""
	}
	switch ns {
	case "*", ".", "~":
	default:
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			return "host " + quote(h) + ": invalid namespace " + quote(ns) + ": " + msgs[0]
		}
	}
	switch {
	case dns == "*":
	case strings.HasPrefix(dns, "*."):
		if msgs := validation.IsDNS1123Subdomain(dns[2:]); len(msgs) > 0 {
			return "host " + quote(h) + ": invalid wildcard " + quote(dns) + ": " + msgs[0]
		}
	case strings.Contains(dns, "*"):
		return "host " + quote(h) + ": a wildcard is only allowed as \"*\" or a leading \"*.\""
	case !strings.Contains(dns, "."):
		return "host " + quote(h) + ": use the fully qualified name (e.g. " + dns + ".<namespace>.svc.cluster.local) or \"*\""
	default:
		if msgs := validation.IsDNS1123Subdomain(dns); len(msgs) > 0 {
			return "host " + quote(h) + ": invalid name " + quote(dns) + ": " + msgs[0]
		}
	}
	return ""
}

func quote(s string) string { return "\"" + s + "\"" }

// Sidecar annotations (skein's own, Istio has no equivalent): infer the proxy's scope
// from the traffic it is seen sending, on top of the egress hosts.
const (
	InferFromTrafficAnnotation = "scope.skein.dev/infer-from-traffic"
	InferredTTLAnnotation      = "scope.skein.dev/inferred-ttl"
)

// ApplySidecarAnnotations reads the scope annotations of a Sidecar.
func ApplySidecarAnnotations(sc *model.Sidecar, annotations map[string]string) []strict.Issue {
	var is issues
	if sc == nil {
		return nil
	}
	infer, ok := annotations[InferFromTrafficAnnotation]
	ttlText, hasTTL := annotations[InferredTTLAnnotation]
	if ok {
		v, err := strconv.ParseBool(infer)
		if err != nil {
			is.add("metadata.annotations."+InferFromTrafficAnnotation, "want \"true\" or \"false\", got %q", infer)
		}
		sc.InferFromTraffic = v
	}
	if hasTTL {
		d, err := time.ParseDuration(ttlText)
		switch {
		case err != nil || d <= 0:
			is.add("metadata.annotations."+InferredTTLAnnotation, "a positive duration is required, got %q", ttlText)
		case !sc.InferFromTraffic:
			is.add("metadata.annotations."+InferredTTLAnnotation, "needs %s: \"true\"", InferFromTrafficAnnotation)
		}
		sc.InferredTTL = d
	}
	if sc.InferFromTraffic && sc.InferredTTL <= 0 {
		sc.InferredTTL = model.DefaultInferredTTL
	}
	return is
}
