package istio

import (
	"sort"
	"strconv"

	"google.golang.org/protobuf/reflect/protoreflect"
	security "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// peerAuthenticationFields are the PeerAuthentication fields skein implements: all of
// them in Istio 1.32. Kept apart from supportedFields so security kinds have their own
// list (AllowPeerAuthenticationField).
var peerAuthenticationFields = map[protoreflect.FullName]bool{
	"istio.security.v1beta1.PeerAuthentication.selector":        true,
	"istio.security.v1beta1.PeerAuthentication.mtls":            true,
	"istio.security.v1beta1.PeerAuthentication.port_level_mtls": true,
	"istio.security.v1beta1.PeerAuthentication.MutualTLS.mode":  true,
	"istio.type.v1beta1.WorkloadSelector.match_labels":          true,
}

// AllowPeerAuthenticationField reports whether skein implements a PeerAuthentication field.
func AllowPeerAuthenticationField(fd protoreflect.FieldDescriptor) bool {
	if fd.ContainingMessage().IsMapEntry() {
		return true
	}
	return peerAuthenticationFields[fd.FullName()]
}

// PeerAuthentication translates a checked security.istio.io PeerAuthentication of the
// object nn, with Istio's validation: label selectors must be valid, port-level
// settings need a selector and ports in 1..65535.
func PeerAuthentication(nn model.NamespacedName, spec *security.PeerAuthentication) (*model.PeerAuthentication, []strict.Issue) {
	var is issues
	out := &model.PeerAuthentication{NamespacedName: nn}
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
	out.Mode = mtlsMode(spec.GetMtls())
	if len(spec.GetPortLevelMtls()) > 0 {
		if len(labels) == 0 {
			is.add("spec.portLevelMtls", "portLevelMtls requires a workload selector (spec.selector.matchLabels), as in Istio")
		}
		out.PortLevel = map[int]model.MTLSMode{}
		ports := make([]int, 0, len(spec.GetPortLevelMtls()))
		for p := range spec.GetPortLevelMtls() {
			ports = append(ports, int(p))
		}
		sort.Ints(ports)
		for _, p := range ports {
			path := strict.Key("spec.portLevelMtls", strconv.Itoa(p))
			m := spec.GetPortLevelMtls()[uint32(p)]
			switch {
			case p < 1 || p > 65535:
				is.add(path, "port %d is out of range 1..65535", p)
			case m == nil:
				is.add(path, "a mode is required")
			default:
				out.PortLevel[p] = mtlsMode(m)
			}
		}
	}
	return out, is
}

func mtlsMode(m *security.PeerAuthentication_MutualTLS) model.MTLSMode {
	switch m.GetMode() {
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return model.MTLSDisable
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return model.MTLSPermissive
	case security.PeerAuthentication_MutualTLS_STRICT:
		return model.MTLSStrict
	}
	return model.MTLSUnset
}
