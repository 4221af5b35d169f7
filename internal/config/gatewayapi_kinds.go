package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"skein.dev/skein/internal/config/gatewayapi"
	"skein.dev/skein/internal/config/istio"
	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

const (
	kindSecret    = "Secret"
	kindNamespace = "Namespace"
)

// gatewayKinds are the Gateway API kinds and the core kinds gateways read (Secret for
// listener certificates, Namespace for allowedRoutes selectors).
func gatewayKinds() []kind {
	return []kind{
		gatewayAPIKind(gatewayapi.KindGatewayClass, func(nn model.NamespacedName, m gatewayapi.Meta, spec *gwv1.GatewayClassSpec) (any, []strict.Issue) {
			return &gatewayapi.GatewayClass{Meta: m, Spec: *spec}, gatewayapi.ValidateGatewayClass(spec)
		}),
		gatewayAPIKind(gatewayapi.KindGateway, func(nn model.NamespacedName, m gatewayapi.Meta, spec *gwv1.GatewaySpec) (any, []strict.Issue) {
			return &gatewayapi.Gateway{Meta: m, Spec: *spec}, gatewayapi.ValidateGateway(spec)
		}),
		gatewayAPIKind(gatewayapi.KindHTTPRoute, func(nn model.NamespacedName, m gatewayapi.Meta, spec *gwv1.HTTPRouteSpec) (any, []strict.Issue) {
			return &gatewayapi.HTTPRoute{Meta: m, Spec: *spec}, gatewayapi.ValidateHTTPRoute(spec)
		}),
		gatewayAPIKind(gatewayapi.KindGRPCRoute, func(nn model.NamespacedName, m gatewayapi.Meta, spec *gwv1.GRPCRouteSpec) (any, []strict.Issue) {
			return &gatewayapi.GRPCRoute{Meta: m, Spec: *spec}, gatewayapi.ValidateGRPCRoute(spec)
		}),
		gatewayAPIKind(gatewayapi.KindTLSRoute, func(nn model.NamespacedName, m gatewayapi.Meta, spec *gwv1.TLSRouteSpec) (any, []strict.Issue) {
			return &gatewayapi.TLSRoute{Meta: m, Spec: *spec}, gatewayapi.ValidateTLSRoute(spec)
		}),
		gatewayAPIKind(gatewayapi.KindTCPRoute, func(nn model.NamespacedName, m gatewayapi.Meta, spec *gwv1.TCPRouteSpec) (any, []strict.Issue) {
			return &gatewayapi.TCPRoute{Meta: m, Spec: *spec}, gatewayapi.ValidateTCPRoute(spec)
		}),
		gatewayAPIKind(gatewayapi.KindReferenceGrant, func(nn model.NamespacedName, m gatewayapi.Meta, spec *gwv1.ReferenceGrantSpec) (any, []strict.Issue) {
			return &gatewayapi.ReferenceGrant{Meta: m, Spec: *spec}, gatewayapi.ValidateReferenceGrant(spec)
		}),
		{
			name: kindSecret, apiVersions: []string{"v1"},
			checkType: reflect.TypeFor[corev1.Secret](),
			build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
				var s corev1.Secret
				if err := decodeJSON(data, &s); err != nil {
					return nil, nil, []strict.Issue{{Msg: err.Error()}}
				}
				merged := map[string][]byte{}
				for k, v := range s.Data {
					merged[k] = v
				}
				for k, v := range s.StringData {
					merged[k] = []byte(v) // stringData wins, as the API server merges it
				}
				if s.Type == "" {
					s.Type = corev1.SecretTypeOpaque
				}
				sec := &gatewayapi.Secret{Meta: objectMeta(data, nn, "v1"), Type: s.Type, Data: merged}
				sec.Manifest = nil // never shown: it holds keys
				return sec, nil, gatewayapi.ValidateSecret(s.Type, merged)
			},
		},
		{
			name: kindNamespace, apiVersions: []string{"v1"},
			checkType: reflect.TypeFor[corev1.Namespace](),
			build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
				var n corev1.Namespace
				if err := decodeJSON(data, &n); err != nil {
					return nil, nil, []strict.Issue{{Msg: err.Error()}}
				}
				return &gatewayapi.Namespace{Meta: objectMeta(data, model.NamespacedName{Name: nn.Name}, "v1")}, nil, nil
			},
		},
	}
}

// gatewayAPIKind is the kind entry of one Gateway API kind with spec type S.
func gatewayAPIKind[S any](name string, build func(model.NamespacedName, gatewayapi.Meta, *S) (any, []strict.Issue)) kind {
	return kind{
		name: name, apiVersions: gatewayapi.Versions[name],
		checkType: reflect.TypeFor[gatewayapi.Object[S]](),
		build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
			var obj gatewayapi.Object[S]
			if err := decodeJSON(data, &obj); err != nil {
				return nil, nil, []strict.Issue{{Msg: err.Error()}}
			}
			if name == gatewayapi.KindGatewayClass {
				nn.Namespace = "" // cluster-scoped
			}
			meta := objectMeta(data, nn, obj.APIVersion)
			v, issues := build(nn, meta, &obj.Spec)
			return v, nil, issues
		},
	}
}

// objectMeta reads what the resolver needs of an object's metadata, and keeps the
// object as written for `skein get`.
func objectMeta(data []byte, nn model.NamespacedName, apiVersion string) gatewayapi.Meta {
	var raw map[string]any
	_ = json.Unmarshal(data, &raw)
	m := gatewayapi.Meta{APIVersion: apiVersion, Namespace: nn.Namespace, Name: nn.Name, Generation: 1, Manifest: raw}
	if md, ok := raw["metadata"].(map[string]any); ok {
		if g, ok := md["generation"].(float64); ok && g > 0 {
			m.Generation = int64(g)
		}
		if ts, ok := md["creationTimestamp"].(string); ok {
			if t, err := time.Parse(time.RFC3339, ts); err == nil {
				m.Created = t
			}
		}
		if l, ok := md["labels"].(map[string]any); ok {
			m.Labels = map[string]string{}
			for k, v := range l {
				m.Labels[k] = fmt.Sprint(v)
			}
		}
		if nn.Namespace != "" {
			md["namespace"] = nn.Namespace
		}
	}
	return m
}

// resolveGateways runs the Gateway API controller logic over the loaded objects and
// adds its gateways, their proxies and every object's status to the mesh.
func (l *loader) resolveGateways(mesh *model.Mesh, cat *istio.Catalog) {
	in := gatewayapi.Input{Suffix: l.suffix, Services: cat.Services}
	for i, o := range l.objects {
		if o.failed {
			continue
		}
		switch v := o.value.(type) {
		case *gatewayapi.GatewayClass:
			v.Order, v.Source = i, o.src
			in.Classes = append(in.Classes, v)
		case *gatewayapi.Gateway:
			v.Order, v.Source = i, o.src
			in.Gateways = append(in.Gateways, v)
		case *gatewayapi.HTTPRoute:
			v.Order, v.Source = i, o.src
			in.HTTPRoutes = append(in.HTTPRoutes, v)
		case *gatewayapi.GRPCRoute:
			v.Order, v.Source = i, o.src
			in.GRPCRoutes = append(in.GRPCRoutes, v)
		case *gatewayapi.TLSRoute:
			v.Order, v.Source = i, o.src
			in.TLSRoutes = append(in.TLSRoutes, v)
		case *gatewayapi.TCPRoute:
			v.Order, v.Source = i, o.src
			in.TCPRoutes = append(in.TCPRoutes, v)
		case *gatewayapi.ReferenceGrant:
			v.Order, v.Source = i, o.src
			in.Grants = append(in.Grants, v)
		case *gatewayapi.Secret:
			in.Secrets = append(in.Secrets, v)
		case *gatewayapi.Namespace:
			in.Namespaces = append(in.Namespaces, v)
		}
	}
	if len(in.Gateways)+len(in.Classes)+len(in.HTTPRoutes)+len(in.GRPCRoutes)+len(in.TLSRoutes)+len(in.TCPRoutes) == 0 {
		return
	}
	res := gatewayapi.Resolve(in)
	mesh.Gateways = append(mesh.Gateways, res.Gateways...)
	mesh.Workloads = append(mesh.Workloads, res.Workloads...)
	mesh.Objects = append(mesh.Objects, res.Objects...)
	mesh.MeshRoutes = res.MeshRoutes
}

// checkGatewayProxies refuses a config where a Workload has the name skein gives a
// Gateway's proxy.
func (l *loader) checkGatewayProxies(mesh *model.Mesh) error {
	seen := map[model.NamespacedName]*model.Workload{}
	var errs ErrorList
	for _, w := range mesh.Workloads {
		if first := seen[w.NamespacedName]; first != nil {
			errs = append(errs, &Error{File: first.Source.File, Line: first.Source.Line, Kind: kindWorkload, Name: w.Namespace + "/" + w.Name,
				Field: "metadata.name", Msg: fmt.Sprintf("the name %s is taken by the proxy skein runs for Gateway %s", w.Name, w.Name[:len(w.Name)-len("-skein")])})
		}
		seen[w.NamespacedName] = w
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
