package gatewayapi

import (
	"crypto/tls"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"skein.dev/skein/internal/model"
)

// Input is every Gateway API object of a load, with the Services and Secrets they
// may refer to.
type Input struct {
	Suffix     string
	Services   map[string]*model.Service // by FQDN
	Classes    []*GatewayClass
	Gateways   []*Gateway
	HTTPRoutes []*HTTPRoute
	GRPCRoutes []*GRPCRoute
	TLSRoutes  []*TLSRoute
	TCPRoutes  []*TCPRoute
	Grants     []*ReferenceGrant
	Secrets    []*Secret
	Namespaces []*Namespace
}

// Result is what the Gateway API objects mean for the mesh.
type Result struct {
	// Gateways are the Gateways of classes skein controls, with routes attached.
	Gateways []*model.Gateway
	// Workloads are their gateway proxies (one per Gateway, as Istio deploys one).
	Workloads []*model.Workload
	// Objects are all Gateway API objects with the status skein computed.
	Objects []*model.Object
	// MeshRoutes are HTTPRoutes attached to Services (GAMMA), by service FQDN.
	MeshRoutes map[string][]model.GatewayRoute
}

// ProxyName is the name of the Workload skein runs for a Gateway (Istio: <gw>-istio).
func ProxyName(gateway string) string { return gateway + "-skein" }

// listenerState is one listener being resolved.
type listenerState struct {
	spec      gwv1.Listener
	cond      conditions
	valid     bool // programmed: routes may attach
	kinds     []gwv1.RouteGroupKind
	attached  int
	tls       *model.GatewayTLS
	routes    []*attachedRule // HTTP and gRPC rules, any order; sorted later
	sni       []model.GatewaySNIRoute
	tcp       []model.RouteDestination
	tcpOwner  *Meta
	hostnames []string
}

type gatewayState struct {
	gw        *Gateway
	cond      conditions
	listeners []*listenerState
	addresses []string
}

// attachedRule is one match of one rule of one route, with the hostname it serves on
// a listener: the unit the precedence rules order.
type attachedRule struct {
	hostname string
	route    model.GatewayRoute
	meta     *Meta
	rule     int
	match    int
	key      matchKey
}

// matchKey holds what the Gateway API precedence rules compare.
type matchKey struct {
	pathRank   int // 0 exact, 1 regex, 2 prefix
	pathLen    int
	method     bool
	headers    int
	queries    int
	grpcSvcLen int
	grpcMthLen int
}

type resolver struct {
	in         Input
	classes    map[string]*GatewayClass
	gateways   map[model.NamespacedName]*gatewayState
	nsLabels   map[string]map[string]string
	secrets    map[model.NamespacedName]*Secret
	out        Result
	objStatus  map[*Meta]map[string]any
	meshRoutes map[string][]*attachedRule
}

// Resolve attaches routes, resolves references and computes status.
func Resolve(in Input) Result {
	r := &resolver{
		in:         in,
		classes:    map[string]*GatewayClass{},
		gateways:   map[model.NamespacedName]*gatewayState{},
		nsLabels:   map[string]map[string]string{},
		secrets:    map[model.NamespacedName]*Secret{},
		objStatus:  map[*Meta]map[string]any{},
		meshRoutes: map[string][]*attachedRule{},
	}
	for _, n := range in.Namespaces {
		l := map[string]string{}
		for k, v := range n.Labels {
			l[k] = v
		}
		r.nsLabels[n.Name] = l
	}
	for _, s := range in.Secrets {
		r.secrets[model.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	for _, c := range in.Classes {
		r.classes[c.Name] = c
		if string(c.Spec.ControllerName) != model.GatewayController {
			continue // another controller's: its status is not ours to write
		}
		cond := conditions{gen: c.Generation}
		cond.set(string(gwv1.GatewayClassConditionStatusAccepted), true, string(gwv1.GatewayClassReasonAccepted), "Handled by skein")
		cond.set(string(gwv1.GatewayClassConditionStatusSupportedVersion), true, string(gwv1.GatewayClassReasonSupportedVersion), "")
		r.objStatus[&c.Meta] = map[string]any{"conditions": toPlain(cond.list)}
	}
	for _, g := range in.Gateways {
		r.gateway(g)
	}
	for _, rt := range in.HTTPRoutes {
		r.httpRoute(rt)
	}
	for _, rt := range in.GRPCRoutes {
		r.grpcRoute(rt)
	}
	for _, rt := range in.TLSRoutes {
		r.tlsRoute(rt)
	}
	for _, rt := range in.TCPRoutes {
		r.tcpRoute(rt)
	}
	r.finishGateways()
	r.finishMeshRoutes()
	r.objects()
	return r.out
}

// ours reports whether a Gateway's class is controlled by skein.
func (r *resolver) ours(g *Gateway) bool {
	c := r.classes[string(g.Spec.GatewayClassName)]
	return c != nil && string(c.Spec.ControllerName) == model.GatewayController
}

func namespaceOr(ns *gwv1.Namespace, def string) string {
	if ns != nil && *ns != "" {
		return string(*ns)
	}
	return def
}

func groupOr(g *gwv1.Group, def string) string {
	if g != nil {
		return string(*g)
	}
	return def
}

func kindOr(k *gwv1.Kind, def string) string {
	if k != nil && *k != "" {
		return string(*k)
	}
	return def
}

// granted reports whether a ReferenceGrant in the target's namespace lets objects of
// fromKind in fromNS refer to the target.
func (r *resolver) granted(fromGroup, fromKind, fromNS, toGroup, toKind, toNS, toName string) bool {
	if fromNS == toNS {
		return true
	}
	for _, g := range r.in.Grants {
		if g.Namespace != toNS {
			continue
		}
		from := false
		for _, f := range g.Spec.From {
			if string(f.Group) == fromGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS {
				from = true
				break
			}
		}
		if !from {
			continue
		}
		for _, t := range g.Spec.To {
			tg := string(t.Group)
			if tg == "core" {
				tg = ""
			}
			if tg == toGroup && string(t.Kind) == toKind && (t.Name == nil || string(*t.Name) == toName) {
				return true
			}
		}
	}
	return false
}

func defaultKinds(p gwv1.ProtocolType) []string {
	switch p {
	case gwv1.HTTPProtocolType, gwv1.HTTPSProtocolType:
		return []string{KindHTTPRoute, KindGRPCRoute}
	case gwv1.TLSProtocolType:
		return []string{KindTLSRoute}
	case gwv1.TCPProtocolType:
		return []string{KindTCPRoute}
	}
	return nil
}

func (r *resolver) gateway(g *Gateway) {
	if !r.ours(g) {
		return
	}
	st := &gatewayState{gw: g, cond: conditions{gen: g.Generation}}
	r.gateways[model.NamespacedName{Namespace: g.Namespace, Name: g.Name}] = st
	addrOK := true
	for _, a := range g.Spec.Addresses {
		if a.Type != nil && *a.Type != gwv1.IPAddressType {
			addrOK = false
			continue
		}
		if a.Value != "" {
			st.addresses = append(st.addresses, a.Value)
		}
	}
	if len(st.addresses) == 0 {
		st.addresses = []string{"127.0.0.1"}
	}
	// Conflicts: listeners sharing a port must all be HTTP, or all TLS-based (HTTPS
	// and TLS, told apart by SNI); TCP takes a port alone. TLS-based listeners on one
	// port must not share a hostname.
	byPort := map[gwv1.PortNumber][]int{}
	for i, l := range g.Spec.Listeners {
		byPort[l.Port] = append(byPort[l.Port], i)
	}
	family := func(p gwv1.ProtocolType) string {
		switch p {
		case gwv1.HTTPSProtocolType, gwv1.TLSProtocolType:
			return "tls"
		}
		return string(p)
	}
	conflict := map[int]string{}
	for _, idx := range byPort {
		fams := map[string]bool{}
		for _, i := range idx {
			fams[family(g.Spec.Listeners[i].Protocol)] = true
		}
		if len(fams) > 1 || (fams["TCP"] && len(idx) > 1) {
			for _, i := range idx {
				conflict[i] = string(gwv1.ListenerReasonProtocolConflict)
			}
			continue
		}
		if fams["tls"] {
			seen := map[string][]int{}
			for _, i := range idx {
				h := ""
				if hn := g.Spec.Listeners[i].Hostname; hn != nil {
					h = string(*hn)
				}
				seen[h] = append(seen[h], i)
			}
			for _, is := range seen {
				if len(is) > 1 {
					for _, i := range is {
						conflict[i] = string(gwv1.ListenerReasonHostnameConflict)
					}
				}
			}
		}
	}
	anyInvalid := false
	for i, l := range g.Spec.Listeners {
		ls := &listenerState{spec: l, cond: conditions{gen: g.Generation}}
		st.listeners = append(st.listeners, ls)
		if l.Hostname != nil {
			ls.hostnames = []string{string(*l.Hostname)}
		}
		supported := defaultKinds(l.Protocol) != nil
		if supported {
			ls.cond.set(string(gwv1.ListenerConditionAccepted), true, string(gwv1.ListenerReasonAccepted), "")
		} else {
			ls.cond.set(string(gwv1.ListenerConditionAccepted), false, string(gwv1.ListenerReasonUnsupportedProtocol), fmt.Sprintf("protocol %s is not supported by skein", l.Protocol))
		}
		if reason, ok := conflict[i]; ok {
			ls.cond.set(string(gwv1.ListenerConditionConflicted), true, reason, "another listener on port "+strconv.Itoa(int(l.Port))+" conflicts with this one")
			ls.cond.set(string(gwv1.ListenerConditionAccepted), false, reason, "")
		} else {
			ls.cond.set(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "")
		}
		refsOK, refReason, refMsg := true, string(gwv1.ListenerReasonResolvedRefs), ""
		// Route kinds.
		allowed := defaultKinds(l.Protocol)
		if l.AllowedRoutes != nil && len(l.AllowedRoutes.Kinds) > 0 {
			var keep []string
			for _, k := range l.AllowedRoutes.Kinds {
				ok := groupOr(k.Group, Group) == Group && contains(allowed, string(k.Kind))
				if ok {
					keep = append(keep, string(k.Kind))
				} else {
					refsOK, refReason, refMsg = false, string(gwv1.ListenerReasonInvalidRouteKinds), fmt.Sprintf("route kind %s/%s is not supported on a %s listener", groupOr(k.Group, Group), k.Kind, l.Protocol)
				}
			}
			allowed = keep
		}
		for _, k := range allowed {
			ls.kinds = append(ls.kinds, gwv1.RouteGroupKind{Group: ptr(gwv1.Group(Group)), Kind: gwv1.Kind(k)})
		}
		// Certificates.
		if l.TLS != nil && (l.TLS.Mode == nil || *l.TLS.Mode == gwv1.TLSModeTerminate) && supported {
			t, reason, msg := r.certificate(g, l.TLS.CertificateRefs)
			if t == nil {
				refsOK, refReason, refMsg = false, reason, msg
			}
			ls.tls = t
		}
		ls.cond.set(string(gwv1.ListenerConditionResolvedRefs), refsOK, refReason, refMsg)
		accepted := ls.cond.isTrue(string(gwv1.ListenerConditionAccepted))
		certOK := l.TLS == nil || (l.TLS.Mode != nil && *l.TLS.Mode == gwv1.TLSModePassthrough) || ls.tls != nil
		ls.valid = accepted && certOK
		if ls.valid {
			ls.cond.set(string(gwv1.ListenerConditionProgrammed), true, string(gwv1.ListenerReasonProgrammed), "")
		} else {
			anyInvalid = true
			ls.cond.set(string(gwv1.ListenerConditionProgrammed), false, string(gwv1.ListenerReasonInvalid), "the listener is not served")
		}
	}
	switch {
	case !addrOK:
		st.cond.set(string(gwv1.GatewayConditionAccepted), false, string(gwv1.GatewayReasonUnsupportedAddress), "only IPAddress addresses are supported")
		st.cond.set(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonInvalid), "")
	case anyInvalid:
		st.cond.set(string(gwv1.GatewayConditionAccepted), true, string(gwv1.GatewayReasonListenersNotValid), "some listeners are not valid; see status.listeners")
		st.cond.set(string(gwv1.GatewayConditionProgrammed), true, string(gwv1.GatewayReasonProgrammed), "")
	default:
		st.cond.set(string(gwv1.GatewayConditionAccepted), true, string(gwv1.GatewayReasonAccepted), "")
		st.cond.set(string(gwv1.GatewayConditionProgrammed), true, string(gwv1.GatewayReasonProgrammed), "")
	}
	if !addrOK {
		for _, ls := range st.listeners {
			ls.valid = false
		}
	}
}

// certificate resolves a listener's certificateRefs (skein serves the first).
func (r *resolver) certificate(g *Gateway, refs []gwv1.SecretObjectReference) (*model.GatewayTLS, string, string) {
	if len(refs) == 0 {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), "no certificateRefs"
	}
	ref := refs[0]
	group, kind := groupOr(ref.Group, ""), kindOr(ref.Kind, "Secret")
	if (group != "" && group != "core") || kind != "Secret" {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), fmt.Sprintf("certificateRef to %s %s is not a Secret", kind, ref.Name)
	}
	ns := namespaceOr(ref.Namespace, g.Namespace)
	if !r.granted(Group, KindGateway, g.Namespace, "", "Secret", ns, string(ref.Name)) {
		return nil, string(gwv1.ListenerReasonRefNotPermitted), fmt.Sprintf("no ReferenceGrant in namespace %s lets Gateways of %s use Secret %s", ns, g.Namespace, ref.Name)
	}
	s := r.secrets[model.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
	if s == nil {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), fmt.Sprintf("Secret %s/%s not found", ns, ref.Name)
	}
	if s.Type != corev1.SecretTypeTLS {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), fmt.Sprintf("Secret %s/%s has type %q, want kubernetes.io/tls", ns, ref.Name, s.Type)
	}
	cert, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), fmt.Sprintf("Secret %s/%s: %v", ns, ref.Name, err)
	}
	return &model.GatewayTLS{Mode: model.GatewayTLSSimple, CertChain: string(cert), Key: string(key), Secret: ns + "/" + string(ref.Name)}, "", ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }

// namespaceAllowed applies a listener's allowedRoutes.namespaces.
func (r *resolver) namespaceAllowed(gw *Gateway, l gwv1.Listener, routeNS string) bool {
	from := gwv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if l.AllowedRoutes != nil && l.AllowedRoutes.Namespaces != nil {
		if l.AllowedRoutes.Namespaces.From != nil {
			from = *l.AllowedRoutes.Namespaces.From
		}
		sel = l.AllowedRoutes.Namespaces.Selector
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return routeNS == gw.Namespace
	case gwv1.NamespacesFromSelector:
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return false
		}
		lbls := map[string]string{"kubernetes.io/metadata.name": routeNS}
		for k, v := range r.nsLabels[routeNS] {
			lbls[k] = v
		}
		return s.Matches(labels.Set(lbls))
	}
	return false
}

// intersect returns the hostnames a route serves on a listener: the Gateway API's
// hostname intersection. ok is false when they share none.
func intersect(listener []string, route []gwv1.Hostname) ([]string, bool) {
	lh := ""
	if len(listener) > 0 {
		lh = listener[0]
	}
	if len(route) == 0 {
		if lh == "" {
			return []string{"*"}, true
		}
		return []string{lh}, true
	}
	var out []string
	seen := map[string]bool{}
	add := func(h string) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, rh := range route {
		h := string(rh)
		switch {
		case lh == "":
			add(h)
		case model.HostnameMatches(lh, h):
			add(h)
		case strings.HasPrefix(h, "*.") && model.HostnameMatches(h, lh):
			add(lh)
		}
	}
	return out, len(out) > 0
}

// routeRef is what attaching needs of any route kind.
type routeRef struct {
	kind      string
	meta      *Meta
	parents   []gwv1.ParentReference
	hostnames []gwv1.Hostname
	// attach adds the route to a listener for the hostnames it serves there.
	attach func(ls *listenerState, hostnames []string)
	// mesh attaches the route to a Service parent (GAMMA); nil when not supported.
	mesh func(svc *model.Service, port int)
}

// parentStatus is one entry of a route's status.parents.
type parentStatus struct {
	ParentRef      gwv1.ParentReference `json:"parentRef"`
	ControllerName string               `json:"controllerName"`
	Conditions     []metav1.Condition   `json:"conditions"`
}

// attachRoute attaches a route to each of its parents and returns its status.parents.
// resolved is the route's ResolvedRefs condition (true, reason, message); accepted is
// false with a reason when the route itself cannot be served (an unsupported value).
func (r *resolver) attachRoute(rt routeRef, resolvedOK bool, resolvedReason, resolvedMsg string, acceptErr string) []parentStatus {
	var out []parentStatus
	for _, p := range rt.parents {
		cond := conditions{gen: rt.meta.Generation}
		group, kind := groupOr(p.Group, Group), kindOr(p.Kind, KindGateway)
		ns := namespaceOr(p.Namespace, rt.meta.Namespace)
		if (group == "" || group == "core") && kind == "Service" {
			svc := r.in.Services[string(p.Name)+"."+ns+"."+r.in.Suffix]
			switch {
			case rt.mesh == nil:
				cond.set(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNotAllowedByListeners), rt.kind+" cannot have a Service parent")
			case svc == nil:
				cond.set(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingParent), fmt.Sprintf("Service %s/%s not found", ns, p.Name))
			case ns != rt.meta.Namespace:
				cond.set(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNotAllowedByListeners), "skein only applies mesh routes to Services of the route's own namespace")
			case acceptErr != "":
				cond.set(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonUnsupportedValue), acceptErr)
			default:
				port := 0
				if p.Port != nil {
					port = int(*p.Port)
				}
				rt.mesh(svc, port)
				cond.set(string(gwv1.RouteConditionAccepted), true, string(gwv1.RouteReasonAccepted), "")
			}
			cond.set(string(gwv1.RouteConditionResolvedRefs), resolvedOK, resolvedReason, resolvedMsg)
			out = append(out, parentStatus{ParentRef: p, ControllerName: model.GatewayController, Conditions: cond.list})
			continue
		}
		if group != Group || kind != KindGateway {
			continue // not a parent kind skein implements; another controller's
		}
		gs := r.gateways[model.NamespacedName{Namespace: ns, Name: string(p.Name)}]
		if gs == nil {
			found := false
			for _, g := range r.in.Gateways {
				if g.Namespace == ns && g.Name == string(p.Name) {
					found = true
				}
			}
			if found {
				continue // a Gateway of another controller
			}
			cond.set(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingParent), fmt.Sprintf("Gateway %s/%s not found", ns, p.Name))
			cond.set(string(gwv1.RouteConditionResolvedRefs), resolvedOK, resolvedReason, resolvedMsg)
			out = append(out, parentStatus{ParentRef: p, ControllerName: model.GatewayController, Conditions: cond.list})
			continue
		}
		reason, msg := string(gwv1.RouteReasonNoMatchingParent), "no listener matches the parentRef's sectionName and port"
		attached := false
		for _, ls := range gs.listeners {
			if p.SectionName != nil && *p.SectionName != ls.spec.Name {
				continue
			}
			if p.Port != nil && *p.Port != ls.spec.Port {
				continue
			}
			if !ls.valid {
				continue
			}
			kindOK := false
			for _, k := range ls.kinds {
				if string(k.Kind) == rt.kind {
					kindOK = true
				}
			}
			if !kindOK || !r.namespaceAllowed(gs.gw, ls.spec, rt.meta.Namespace) {
				reason, msg = string(gwv1.RouteReasonNotAllowedByListeners), "the listener's allowedRoutes do not allow this route"
				continue
			}
			hosts := []string{"*"}
			if rt.hostnames != nil || ls.hostnames != nil {
				var ok bool
				if hosts, ok = intersect(ls.hostnames, rt.hostnames); !ok {
					if reason != string(gwv1.RouteReasonNotAllowedByListeners) {
						reason, msg = string(gwv1.RouteReasonNoMatchingListenerHostname), "no hostname of the route matches the listener's"
					}
					continue
				}
			}
			if acceptErr != "" {
				reason, msg = string(gwv1.RouteReasonUnsupportedValue), acceptErr
				continue
			}
			attached = true
			ls.attached++
			rt.attach(ls, hosts)
		}
		if attached {
			cond.set(string(gwv1.RouteConditionAccepted), true, string(gwv1.RouteReasonAccepted), "")
		} else {
			cond.set(string(gwv1.RouteConditionAccepted), false, reason, msg)
		}
		cond.set(string(gwv1.RouteConditionResolvedRefs), resolvedOK, resolvedReason, resolvedMsg)
		out = append(out, parentStatus{ParentRef: p, ControllerName: model.GatewayController, Conditions: cond.list})
	}
	return out
}

// backends resolves a rule's backendRefs to destinations; invalid ones add their
// weight to invalid. The first problem found gives the route's ResolvedRefs reason.
type backendResult struct {
	dests []model.RouteDestination
	// index is the position in refs of each of dests.
	index   []int
	invalid int
	reason  string
	msg     string
}

func (r *resolver) backends(fromKind string, meta *Meta, refs []gwv1.BackendRef) backendResult {
	var res backendResult
	fail := func(reason, msg string, w int) {
		res.invalid += w
		if res.reason == "" {
			res.reason, res.msg = reason, msg
		}
	}
	for i, b := range refs {
		w := 1
		if b.Weight != nil {
			w = int(*b.Weight)
		}
		group, kind := groupOr(b.Group, ""), kindOr(b.Kind, "Service")
		ns := namespaceOr(b.Namespace, meta.Namespace)
		if (group != "" && group != "core") || kind != "Service" {
			fail(string(gwv1.RouteReasonInvalidKind), fmt.Sprintf("backendRef %s/%s %s: only Services are supported", group, kind, b.Name), w)
			continue
		}
		if !r.granted(Group, fromKind, meta.Namespace, "", "Service", ns, string(b.Name)) {
			fail(string(gwv1.RouteReasonRefNotPermitted), fmt.Sprintf("backendRef Service %s/%s: no ReferenceGrant in %s allows it", ns, b.Name, ns), w)
			continue
		}
		host := string(b.Name) + "." + ns + "." + r.in.Suffix
		svc := r.in.Services[host]
		if svc == nil {
			fail(string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("Service %s/%s not found", ns, b.Name), w)
			continue
		}
		port := 0
		if b.Port != nil {
			port = int(*b.Port)
		}
		if _, ok := svc.Port(port); !ok {
			fail(string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("Service %s/%s has no port %d", ns, b.Name, port), w)
			continue
		}
		if w == 0 {
			continue // weight 0: no traffic, and nothing to check further
		}
		res.dests = append(res.dests, model.RouteDestination{Host: host, Port: port, Weight: w})
		res.index = append(res.index, i)
	}
	return res
}

// parseCreated is a route's age for precedence: objects in files rarely carry a
// creationTimestamp, and one without is as new as the load (younger than any that has
// one), so an explicit older timestamp always wins.
func parseCreated(m *Meta) time.Time {
	if m.Created.IsZero() {
		return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return m.Created
}

// ParseDuration reads a Gateway API duration ("1h30m", "500ms").
func ParseDuration(d gwv1.Duration) (time.Duration, error) {
	return time.ParseDuration(string(d))
}

func (r *resolver) setRouteStatus(meta *Meta, parents []parentStatus) {
	if parents == nil {
		parents = []parentStatus{}
	}
	r.objStatus[meta] = map[string]any{"parents": toPlain(parents)}
}

// finishGateways orders each listener's routes and builds the model gateways and
// their proxies.
func (r *resolver) finishGateways() {
	for _, g := range r.in.Gateways {
		st := r.gateways[model.NamespacedName{Namespace: g.Namespace, Name: g.Name}]
		if st == nil {
			continue
		}
		mg := &model.Gateway{
			NamespacedName:    model.NamespacedName{Namespace: g.Namespace, Name: g.Name},
			Selector:          map[string]string{model.GatewayNameLabel: g.Name},
			SelectorNamespace: g.Namespace,
		}
		var lstatus []map[string]any
		for _, ls := range st.listeners {
			lstatus = append(lstatus, map[string]any{
				"name":           string(ls.spec.Name),
				"supportedKinds": toPlain(nonNil(ls.kinds)),
				"attachedRoutes": ls.attached,
				"conditions":     toPlain(ls.cond.list),
			})
			if !ls.valid {
				continue
			}
			for _, addr := range st.addresses {
				mg.Listeners = append(mg.Listeners, r.modelListener(ls, addr))
			}
		}
		var addrs []map[string]any
		for _, a := range st.addresses {
			addrs = append(addrs, map[string]any{"type": string(gwv1.IPAddressType), "value": a})
		}
		r.objStatus[&g.Meta] = map[string]any{
			"addresses":  toPlain(addrs),
			"conditions": toPlain(st.cond.list),
			"listeners":  toPlain(lstatus),
		}
		r.out.Gateways = append(r.out.Gateways, mg)
		r.out.Workloads = append(r.out.Workloads, &model.Workload{
			NamespacedName: model.NamespacedName{Namespace: g.Namespace, Name: ProxyName(g.Name)},
			Labels:         map[string]string{model.GatewayNameLabel: g.Name},
			ServiceAccount: ProxyName(g.Name),
			Replicas:       1,
			Role:           model.RoleGateway,
		})
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (r *resolver) modelListener(ls *listenerState, addr string) model.GatewayListener {
	ml := model.GatewayListener{
		Name:      string(ls.spec.Name),
		Address:   addr,
		Port:      int(ls.spec.Port),
		Hostnames: ls.hostnames,
		TLS:       ls.tls,
	}
	switch ls.spec.Protocol {
	case gwv1.HTTPProtocolType:
		ml.Protocol = model.GatewayHTTP
	case gwv1.HTTPSProtocolType:
		ml.Protocol = model.GatewayHTTPS
	case gwv1.TLSProtocolType:
		ml.Protocol = model.GatewayTLSProtocol
	case gwv1.TCPProtocolType:
		ml.Protocol = model.GatewayTCP
	}
	ml.VirtualHosts = buildVirtualHosts(ls.routes)
	ml.TLSRoutes = ls.sni
	ml.TCP = ls.tcp
	return ml
}

// buildVirtualHosts groups rules by hostname and orders each group by the Gateway API
// precedence rules.
func buildVirtualHosts(rules []*attachedRule) []model.GatewayVirtualHost {
	by := map[string][]*attachedRule{}
	for _, ar := range rules {
		by[ar.hostname] = append(by[ar.hostname], ar)
	}
	hosts := make([]string, 0, len(by))
	for h := range by {
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool { return hostLess(hosts[i], hosts[j]) })
	var out []model.GatewayVirtualHost
	for _, h := range hosts {
		list := by[h]
		sort.SliceStable(list, func(i, j int) bool { return precedes(list[i], list[j]) })
		vh := model.GatewayVirtualHost{Hostname: h}
		for _, ar := range list {
			vh.Routes = append(vh.Routes, ar.route)
		}
		out = append(out, vh)
	}
	return out
}

// hostLess orders hostnames most specific first: exact names, then wildcards by
// length, "*" last.
func hostLess(a, b string) bool {
	wa, wb := strings.HasPrefix(a, "*"), strings.HasPrefix(b, "*")
	if wa != wb {
		return !wa
	}
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a < b
}

// precedes is the Gateway API's order between two matches on one hostname: exact
// path, longest prefix (regular expressions between the two, as Envoy Gateway does),
// method, most headers, most query parameters; then the oldest route, then by
// namespace/name, then rule and match order.
func precedes(a, b *attachedRule) bool {
	ka, kb := a.key, b.key
	if ka.pathRank != kb.pathRank {
		return ka.pathRank < kb.pathRank
	}
	if ka.pathLen != kb.pathLen {
		return ka.pathLen > kb.pathLen
	}
	if ka.grpcSvcLen != kb.grpcSvcLen {
		return ka.grpcSvcLen > kb.grpcSvcLen
	}
	if ka.grpcMthLen != kb.grpcMthLen {
		return ka.grpcMthLen > kb.grpcMthLen
	}
	if ka.method != kb.method {
		return ka.method
	}
	if ka.headers != kb.headers {
		return ka.headers > kb.headers
	}
	if ka.queries != kb.queries {
		return ka.queries > kb.queries
	}
	ca, cb := parseCreated(a.meta), parseCreated(b.meta)
	if !ca.Equal(cb) {
		return ca.Before(cb)
	}
	na, nb := a.meta.Namespace+"/"+a.meta.Name, b.meta.Namespace+"/"+b.meta.Name
	if na != nb {
		return na < nb
	}
	if a.rule != b.rule {
		return a.rule < b.rule
	}
	return a.match < b.match
}

func (r *resolver) objects() {
	add := func(kind string, m *Meta) {
		man := map[string]any{}
		for k, v := range m.Manifest {
			man[k] = v
		}
		if st, ok := r.objStatus[m]; ok {
			man["status"] = st
		}
		stripNullTimes(man)
		r.out.Objects = append(r.out.Objects, &model.Object{Kind: kind, Name: model.NamespacedName{Namespace: m.Namespace, Name: m.Name}, Manifest: man, Source: m.Source})
	}
	for _, o := range r.in.Classes {
		add(KindGatewayClass, &o.Meta)
	}
	for _, o := range r.in.Gateways {
		add(KindGateway, &o.Meta)
	}
	for _, o := range r.in.HTTPRoutes {
		add(KindHTTPRoute, &o.Meta)
	}
	for _, o := range r.in.GRPCRoutes {
		add(KindGRPCRoute, &o.Meta)
	}
	for _, o := range r.in.TLSRoutes {
		add(KindTLSRoute, &o.Meta)
	}
	for _, o := range r.in.TCPRoutes {
		add(KindTCPRoute, &o.Meta)
	}
	for _, o := range r.in.Grants {
		add(KindReferenceGrant, &o.Meta)
	}
}

// stripNullTimes removes the null lastTransitionTime of computed conditions (filled in
// when served, see StampTimes).
func stripNullTimes(v any) {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["lastTransitionTime"]; ok && t == nil {
			delete(x, "lastTransitionTime")
		}
		for _, e := range x {
			stripNullTimes(e)
		}
	case []any:
		for _, e := range x {
			stripNullTimes(e)
		}
	}
}
