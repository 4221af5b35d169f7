package analyze

import (
	"fmt"
	"sort"
	"strings"

	"skein.dev/skein/internal/model"
)

// Gateway API checks. They read the status the config loader computed for each
// object (model.Object), so they say exactly what `skein get` would show.
const (
	// CodeRouteNotAttached: a route that no parent accepted.
	CodeRouteNotAttached = "SK0301"
	// CodeListenerConflict: listeners of one Gateway that conflict (port, protocol,
	// hostname).
	CodeListenerConflict = "SK0302"
	// CodeRefNotPermitted: a reference to another namespace without a ReferenceGrant.
	CodeRefNotPermitted = "SK0303"
	// CodeGatewayClassUncontrolled: a Gateway whose class nobody here controls.
	CodeGatewayClassUncontrolled = "SK0304"
)

func init() {
	register(Check{Name: "gateway-api", Codes: []string{CodeRouteNotAttached, CodeListenerConflict, CodeRefNotPermitted, CodeGatewayClassUncontrolled}, Run: checkGatewayAPI})
}

func checkGatewayAPI(m *model.Mesh) []Finding {
	var out []Finding
	classes := map[string]string{} // name -> controllerName
	for _, o := range m.Objects {
		if o.Kind == "GatewayClass" {
			classes[o.Name.Name] = path(o.Manifest, "spec", "controllerName")
		}
	}
	for _, o := range m.Objects {
		switch o.Kind {
		case "Gateway":
			out = append(out, gatewayFindings(o, classes)...)
		case "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute":
			out = append(out, routeFindings(o)...)
		}
	}
	return out
}

func gatewayFindings(o *model.Object, classes map[string]string) []Finding {
	var out []Finding
	class := path(o.Manifest, "spec", "gatewayClassName")
	ctrl, ok := classes[class]
	switch {
	case !ok:
		out = append(out, finding(CodeGatewayClassUncontrolled, Warning, o.Kind, o.Name, o.Source,
			fmt.Sprintf("add a GatewayClass %s with spec.controllerName %s, or use an existing class", class, model.GatewayController),
			"GatewayClass %q does not exist: nobody controls this Gateway and no proxy serves it", class))
	case ctrl != model.GatewayController:
		out = append(out, finding(CodeGatewayClassUncontrolled, Warning, o.Kind, o.Name, o.Source,
			fmt.Sprintf("set the class's spec.controllerName to %s for skein to serve it", model.GatewayController),
			"GatewayClass %q is controlled by %s, which does not run here: no proxy serves this Gateway", class, ctrl))
	}
	st, _ := o.Manifest["status"].(map[string]any)
	listeners, _ := st["listeners"].([]any)
	for _, l := range listeners {
		lm, _ := l.(map[string]any)
		name := fmt.Sprint(lm["name"])
		for _, c := range conditionList(lm) {
			switch {
			case c["type"] == "Conflicted" && c["status"] == "True":
				out = append(out, finding(CodeListenerConflict, Error, o.Kind, o.Name, o.Source,
					"give the listeners sharing a port compatible protocols (HTTP alone; HTTPS and TLS with distinct hostnames; TCP alone)",
					"listener %s conflicts (%s): %s; it is not served", name, c["reason"], c["message"]))
			case c["type"] == "ResolvedRefs" && c["reason"] == "RefNotPermitted":
				out = append(out, finding(CodeRefNotPermitted, Error, o.Kind, o.Name, o.Source,
					"add a ReferenceGrant in the Secret's namespace from kind Gateway of this namespace",
					"listener %s: %s", name, c["message"]))
			}
		}
	}
	return out
}

func routeFindings(o *model.Object) []Finding {
	var out []Finding
	st, _ := o.Manifest["status"].(map[string]any)
	parents, _ := st["parents"].([]any)
	accepted := 0
	var reasons []string
	refReported := false
	for _, p := range parents {
		pm, _ := p.(map[string]any)
		for _, c := range conditionList(pm) {
			if c["type"] == "Accepted" {
				if c["status"] == "True" {
					accepted++
				} else {
					reasons = append(reasons, fmt.Sprintf("%s (%s)", parentName(pm), c["message"]))
				}
			}
			if c["type"] == "ResolvedRefs" && c["reason"] == "RefNotPermitted" && !refReported {
				refReported = true
				out = append(out, finding(CodeRefNotPermitted, Error, o.Kind, o.Name, o.Source,
					"add a ReferenceGrant in the backend's namespace from kind "+o.Kind+" of namespace "+o.Name.Namespace+", or move the backend",
					"%s; that share of requests is answered 500", c["message"]))
			}
		}
	}
	if len(parents) == 0 && hasParentRefs(o.Manifest) {
		return out // its parents are other controllers' Gateways: not for skein to judge
	}
	if accepted == 0 {
		msg := "it has no parentRefs"
		if len(reasons) > 0 {
			sort.Strings(reasons)
			msg = "no parent accepted it: " + strings.Join(reasons, "; ")
		}
		out = append(out, finding(CodeRouteNotAttached, Warning, o.Kind, o.Name, o.Source,
			"check spec.parentRefs (name, namespace, sectionName, port) and the listeners' allowedRoutes and hostnames",
			"route is attached to nothing: %s", msg))
	}
	return out
}

func hasParentRefs(m map[string]any) bool {
	spec, _ := m["spec"].(map[string]any)
	refs, _ := spec["parentRefs"].([]any)
	return len(refs) > 0
}

func parentName(p map[string]any) string {
	ref, _ := p["parentRef"].(map[string]any)
	s := fmt.Sprint(ref["name"])
	if ns, ok := ref["namespace"].(string); ok && ns != "" {
		s = ns + "/" + s
	}
	if sec, ok := ref["sectionName"].(string); ok && sec != "" {
		s += "." + sec
	}
	return s
}

func conditionList(m map[string]any) []map[string]any {
	list, _ := m["conditions"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, c := range list {
		if cm, ok := c.(map[string]any); ok {
			out = append(out, cm)
		}
	}
	return out
}

func path(m map[string]any, keys ...string) string {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = mm[k]
	}
	s, _ := v.(string)
	return s
}

const (
	// CodeGatewayNotFound: a VirtualService bound to a gateway that does not exist.
	CodeGatewayNotFound = "SK0305"
	// CodeGatewayNoProxy: a Gateway whose selector picks no gateway Workload.
	CodeGatewayNoProxy = "SK0306"
)

func init() {
	register(Check{Name: "istio-gateway", Codes: []string{CodeGatewayNotFound, CodeGatewayNoProxy}, Run: checkIstioGateways})
}

// checkIstioGateways reports VirtualServices bound to gateways that are not in the
// config, and gateways that no gateway Workload serves.
func checkIstioGateways(m *model.Mesh) []Finding {
	var out []Finding
	exists := map[string]bool{}
	for _, g := range m.Gateways {
		exists[g.Namespace+"/"+g.Name] = true
		served := false
		for _, w := range m.Workloads {
			if w.Role == model.RoleGateway && g.Selects(w.Namespace, w.Labels) {
				served = true
				break
			}
		}
		if !served {
			out = append(out, finding(CodeGatewayNoProxy, Warning, "Gateway", g.NamespacedName, g.Source,
				"add a Workload with spec.role: gateway and the selector's labels",
				"no gateway Workload has labels %s: nothing listens for this gateway", labelString(g.Selector)))
		}
	}
	for _, vs := range m.VirtualServices {
		for _, ref := range vs.Gateways {
			if ref != "mesh" && !exists[ref] {
				out = append(out, finding(CodeGatewayNotFound, Warning, "VirtualService", vs.NamespacedName, vs.Source,
					"check spec.gateways: namespace/name of an Istio Gateway (or mesh)",
					"gateway %s does not exist: the VirtualService is not served there", ref))
			}
		}
	}
	return out
}
