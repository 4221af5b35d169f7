package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skein.dev/skein/internal/config/istio"
	"skein.dev/skein/internal/config/kube"
	"skein.dev/skein/internal/config/skein"
	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

const (
	kindService            = "Service"
	kindWorkload           = "Workload"
	kindVirtualService     = "VirtualService"
	kindDestinationRule    = "DestinationRule"
	kindPeerAuthentication = "PeerAuthentication"

	kindAuthorizationPolicy   = "AuthorizationPolicy"
	kindRequestAuthentication = "RequestAuthentication"
	kindSidecar               = "Sidecar"
	kindServiceEntry          = "ServiceEntry"
	kindTelemetry             = "Telemetry"
	kindWorkloadEntry         = "WorkloadEntry"
)

const supportedKinds = "skein.dev/v1alpha1 Workload, v1 Secret and Namespace, gateway.networking.k8s.io GatewayClass, Gateway, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute and ReferenceGrant, networking.istio.io/v1, v1beta1 or v1alpha3 VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, Gateway and Sidecar, security.istio.io/v1 or v1beta1 PeerAuthentication, AuthorizationPolicy and RequestAuthentication, telemetry.istio.io/v1 or v1alpha1 Telemetry"

// kind says how one kind of object is checked, decoded, translated and cross-checked.
type kind struct {
	name string
	// kind is the YAML kind when it differs from name (two API groups use "Gateway").
	kind        string
	apiVersions []string
	// checkType is what strict.Check walks; protobuf fields in it are checked by descriptor.
	checkType  reflect.Type
	allowField func(protoreflect.FieldDescriptor) bool
	// build decodes a checked document (as JSON) and translates it; spec is kept for
	// references.
	build      func(data []byte, nn model.NamespacedName, suffix string) (value, spec any, issues []strict.Issue)
	references func(ns string, spec any, cat *istio.Catalog) []strict.Issue
}

var istioVersions = []string{"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}

var peerAuthenticationVersions = []string{"security.istio.io/v1", "security.istio.io/v1beta1"}

var securityVersions = peerAuthenticationVersions

var telemetryVersions = []string{"telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"}

// kinds returns the table of accepted kinds. A function, not a package variable, so
// there is no mutable package state.
func kinds() []kind {
	return append([]kind{
		{
			name: kindService, apiVersions: []string{"v1"},
			checkType: reflect.TypeFor[corev1.Service](),
			build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
				var s corev1.Service
				if err := decodeJSON(data, &s); err != nil {
					return nil, nil, []strict.Issue{{Msg: err.Error()}}
				}
				s.Namespace = nn.Namespace
				svc, issues := kube.Service(&s)
				return svc, nil, issues
			},
		},
		{
			name: kindWorkload, apiVersions: []string{skein.APIVersion},
			checkType: reflect.TypeFor[skein.Workload](),
			build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
				var w skein.Workload
				if err := decodeJSON(data, &w); err != nil {
					return nil, nil, []strict.Issue{{Msg: err.Error()}}
				}
				w.Namespace = nn.Namespace
				wl, issues := skein.ToModel(&w)
				return wl, nil, issues
			},
		},
		{
			name: kindVirtualService, apiVersions: istioVersions,
			checkType:  reflect.TypeFor[istioObject[networking.VirtualService]](),
			allowField: istio.AllowField,
			build: func(data []byte, nn model.NamespacedName, suffix string) (any, any, []strict.Issue) {
				var spec networking.VirtualService
				if issues := decodeIstio(data, &spec); issues != nil {
					return nil, nil, issues
				}
				vs, issues := istio.VirtualService(nn, &spec, suffix)
				var env istioEnvelope
				if err := decodeJSON(data, &env); err == nil {
					issues = append(issues, istio.ApplyRetryBudget(vs, env.Annotations)...)
				}
				return vs, &spec, issues
			},
			references: func(ns string, spec any, cat *istio.Catalog) []strict.Issue {
				return istio.VirtualServiceReferences(ns, spec.(*networking.VirtualService), cat)
			},
		},
		{
			name: kindDestinationRule, apiVersions: istioVersions,
			checkType:  reflect.TypeFor[istioObject[networking.DestinationRule]](),
			allowField: istio.AllowField,
			build: func(data []byte, nn model.NamespacedName, suffix string) (any, any, []strict.Issue) {
				var spec networking.DestinationRule
				if issues := decodeIstio(data, &spec); issues != nil {
					return nil, nil, issues
				}
				dr, issues := istio.DestinationRule(nn, &spec, suffix)
				issues = append(issues, istio.ApplyLBAnnotations(dr, annotationsOf(data))...)
				return dr, &spec, issues
			},
			references: func(ns string, spec any, cat *istio.Catalog) []strict.Issue {
				return istio.DestinationRuleReferences(ns, spec.(*networking.DestinationRule), cat)
			},
		},
		{
			name: kindPeerAuthentication, apiVersions: peerAuthenticationVersions,
			checkType:  reflect.TypeFor[istioObject[security.PeerAuthentication]](),
			allowField: istio.AllowPeerAuthenticationField,
			build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
				var spec security.PeerAuthentication
				if issues := decodeIstio(data, &spec); issues != nil {
					return nil, nil, issues
				}
				pa, issues := istio.PeerAuthentication(nn, &spec)
				return pa, &spec, issues
			},
		},
		{
			name: kindTelemetry, apiVersions: telemetryVersions,
			checkType:  reflect.TypeFor[istioObject[telemetry.Telemetry]](),
			allowField: istio.AllowField,
			build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
				var spec telemetry.Telemetry
				if issues := decodeIstio(data, &spec); issues != nil {
					return nil, nil, issues
				}
				t, issues := istio.Telemetry(nn, &spec)
				return t, &spec, issues
			},
		},
		{
			name: kindAuthorizationPolicy, apiVersions: securityVersions,
			checkType:  reflect.TypeFor[istioObject[security.AuthorizationPolicy]](),
			allowField: istio.AllowField,
			build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
				var spec security.AuthorizationPolicy
				if issues := decodeIstioOptionalSpec(data, &spec); issues != nil {
					return nil, nil, issues
				}
				ap, issues := istio.AuthorizationPolicy(nn, &spec)
				return ap, &spec, issues
			},
		},
		{
			name: kindRequestAuthentication, apiVersions: securityVersions,
			checkType:  reflect.TypeFor[istioObject[security.RequestAuthentication]](),
			allowField: istio.AllowField,
			build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
				var spec security.RequestAuthentication
				if issues := decodeIstioOptionalSpec(data, &spec); issues != nil {
					return nil, nil, issues
				}
				ra, issues := istio.RequestAuthentication(nn, &spec)
				return ra, &spec, issues
			},
		},
		sidecarKind(),
		{
			name: kindServiceEntry, apiVersions: istioVersions,
			checkType:  reflect.TypeFor[istioObject[networking.ServiceEntry]](),
			allowField: istio.AllowField,
			build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
				var spec networking.ServiceEntry
				if issues := decodeIstio(data, &spec); issues != nil {
					return nil, nil, issues
				}
				svcs, issues := istio.ServiceEntry(nn, &spec)
				return svcs, &spec, issues
			},
		},
		{
			name: kindWorkloadEntry, apiVersions: istioVersions,
			checkType:  reflect.TypeFor[istioObject[networking.WorkloadEntry]](),
			allowField: istio.AllowField,
			build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
				var spec networking.WorkloadEntry
				if issues := decodeIstio(data, &spec); issues != nil {
					return nil, nil, issues
				}
				we, issues := istio.WorkloadEntry(nn, &spec)
				return we, &spec, issues
			},
		},
	}, append(gatewayKinds(), istioGatewayKind())...)
}

// decodeIstioOptionalSpec is decodeIstio for kinds whose spec may be empty or absent:
// an AuthorizationPolicy without spec (or `spec: {}`) is Istio's "allow nothing".
func decodeIstioOptionalSpec(data []byte, spec proto.Message) []strict.Issue {
	var env istioEnvelope
	if err := decodeJSON(data, &env); err != nil {
		return []strict.Issue{{Msg: err.Error()}}
	}
	if len(env.Spec) == 0 || string(env.Spec) == "null" {
		return nil
	}
	if err := protojson.Unmarshal(env.Spec, spec); err != nil {
		return []strict.Issue{{Path: "spec", Msg: fmt.Sprintf("decoding: %v", err)}}
	}
	return nil
}

func findKind(apiVersion, name string) *kind {
	for _, k := range kinds() {
		if k.name != name && k.kind != name {
			continue
		}
		for _, v := range k.apiVersions {
			if v == apiVersion {
				return &k
			}
		}
	}
	return nil
}

func findKindByName(name string) *kind {
	for _, k := range kinds() {
		if k.name == name {
			return &k
		}
	}
	return nil
}

// istioObject is the shape strict.Check walks for an Istio kind. Status is not
// accepted: it is not configuration.
type istioObject[T any] struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              *T `json:"spec"`
}

// istioEnvelope decodes an Istio object around its spec, which protojson decodes.
type istioEnvelope struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              json.RawMessage `json:"spec"`
}

func decodeIstio(data []byte, spec proto.Message) []strict.Issue {
	var env istioEnvelope
	if err := decodeJSON(data, &env); err != nil {
		return []strict.Issue{{Msg: err.Error()}}
	}
	if len(env.Spec) == 0 || string(env.Spec) == "null" {
		return []strict.Issue{{Path: "spec", Msg: "spec is required"}}
	}
	if err := protojson.Unmarshal(env.Spec, spec); err != nil {
		return []strict.Issue{{Path: "spec", Msg: fmt.Sprintf("decoding: %v", err)}}
	}
	return nil
}

// decodeJSON decodes strictly; strict.Check has already reported anything it would
// refuse, so an error here means the checker and the decoder disagree.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	return nil
}

// annotationsOf reads metadata.annotations of a checked document.
func annotationsOf(data []byte) map[string]string {
	var env istioEnvelope
	if decodeJSON(data, &env) != nil {
		return nil
	}
	return env.Annotations
}
