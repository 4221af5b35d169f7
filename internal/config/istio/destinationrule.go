package istio

import (
	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// DestinationRule translates a checked DestinationRule spec of the object nn; its host
// is resolved relative to nn's namespace.
func DestinationRule(nn model.NamespacedName, spec *networking.DestinationRule, suffix string) (*model.DestinationRule, []strict.Issue) {
	var is issues
	out := &model.DestinationRule{NamespacedName: nn}
	switch h := spec.GetHost(); {
	case h == "":
		is.add("spec.host", "host is required")
	case h[0] == '*':
		is.add("spec.host", "wildcard host %q is not supported yet by skein", h)
	default:
		out.Host = ResolveHost(h, nn.Namespace, suffix)
	}
	out.TrafficPolicy = trafficPolicy(spec.GetTrafficPolicy(), "spec.trafficPolicy", &is)
	names := map[string]int{}
	for i, s := range spec.GetSubsets() {
		path := strict.Index("spec.subsets", i)
		switch first, dup := names[s.GetName()]; {
		case s.GetName() == "":
			is.add(strict.Field(path, "name"), "name is required")
		case dup:
			is.add(strict.Field(path, "name"), "subset %q is also spec.subsets[%d]", s.GetName(), first)
		default:
			if msgs := validation.IsDNS1123Label(s.GetName()); len(msgs) > 0 {
				is.add(strict.Field(path, "name"), "invalid subset name %q: %s", s.GetName(), msgs[0])
			}
			names[s.GetName()] = i
		}
		out.Subsets = append(out.Subsets, model.Subset{
			Name:          s.GetName(),
			Labels:        s.GetLabels(),
			TrafficPolicy: trafficPolicy(s.GetTrafficPolicy(), strict.Field(path, "trafficPolicy"), &is),
		})
	}
	return out, is
}
