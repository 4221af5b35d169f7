package analyze

import (
	"fmt"

	"skein.dev/skein/internal/model"
)

// CodeMTLSConflict: a DestinationRule's TLS mode and the server's PeerAuthentication
// cannot work together, so every request between them fails.
const CodeMTLSConflict = "SK0106"

func init() {
	register(Check{Name: "mtls-conflict", Codes: []string{CodeMTLSConflict}, Run: checkMTLSConflict})
}

// checkMTLSConflict compares, for every port of every service with a DestinationRule,
// the client side (ISTIO_MUTUAL or DISABLE, per subset and port) with the mTLS mode the
// PeerAuthentications give each selected workload's target port: ISTIO_MUTUAL towards
// DISABLE, and DISABLE towards STRICT, fail.
func checkMTLSConflict(m *model.Mesh) []Finding {
	var out []Finding
	for _, dr := range m.DestinationRules {
		svc := m.ServiceByHost(dr.Host)
		if svc == nil {
			continue
		}
		subsets := append([]string{""}, subsetNames(dr)...)
		seen := map[string]bool{}
		for _, sp := range svc.Ports {
			for _, subset := range subsets {
				tls := dr.ClientTLSFor(subset, sp.Port)
				if tls == nil || (tls.Mode != model.TLSIstioMutual && tls.Mode != model.TLSDisable) {
					continue
				}
				for _, w := range m.Workloads {
					if w.Namespace != svc.Namespace || !model.Selects(svc.Selector, w.Labels) || !inSubset(dr, subset, w.Labels) {
						continue
					}
					port, ok := targetPort(sp, w)
					if !ok {
						continue
					}
					mode := m.EffectivePeerAuthentication(w.Namespace, w.Labels, port)
					var msg, hint string
					switch {
					case tls.Mode == model.TLSIstioMutual && mode == model.MTLSDisable:
						msg = fmt.Sprintf("sends ISTIO_MUTUAL to %s:%d%s, but PeerAuthentication DISABLEs mTLS on workload %s/%s port %d: every request fails",
							dr.Host, sp.Port, subsetText(subset), w.Namespace, w.Name, port)
						hint = "set the PeerAuthentication to PERMISSIVE or STRICT for that workload, or the DestinationRule tls.mode to DISABLE"
					case tls.Mode == model.TLSDisable && mode == model.MTLSStrict:
						msg = fmt.Sprintf("sends plaintext (tls DISABLE) to %s:%d%s, but PeerAuthentication is STRICT on workload %s/%s port %d: every request fails",
							dr.Host, sp.Port, subsetText(subset), w.Namespace, w.Name, port)
						hint = "remove trafficPolicy.tls (auto mTLS) or use ISTIO_MUTUAL, or make the PeerAuthentication PERMISSIVE"
					default:
						continue
					}
					if seen[msg] {
						continue
					}
					seen[msg] = true
					out = append(out, finding(CodeMTLSConflict, Error, "DestinationRule", dr.NamespacedName, dr.Source, hint, "%s", msg))
				}
			}
		}
	}
	return out
}

func subsetNames(dr *model.DestinationRule) []string {
	out := make([]string, len(dr.Subsets))
	for i, s := range dr.Subsets {
		out[i] = s.Name
	}
	return out
}

func inSubset(dr *model.DestinationRule, subset string, labels map[string]string) bool {
	if subset == "" {
		return true
	}
	for _, s := range dr.Subsets {
		if s.Name == subset {
			return model.Selects(s.Labels, labels) || len(s.Labels) == 0
		}
	}
	return false
}

func subsetText(subset string) string {
	if subset == "" {
		return ""
	}
	return " (subset " + subset + ")"
}

func targetPort(sp model.ServicePort, w *model.Workload) (int, bool) {
	switch {
	case sp.TargetPort != 0:
		return sp.TargetPort, true
	case sp.TargetPortName != "":
		for _, cp := range w.Ports {
			if cp.Name == sp.TargetPortName {
				return cp.ContainerPort, true
			}
		}
		return 0, false
	}
	return sp.Port, true
}
