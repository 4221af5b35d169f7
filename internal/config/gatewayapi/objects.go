// Package gatewayapi reads the Kubernetes Gateway API (gateway.networking.k8s.io:
// GatewayClass, Gateway, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, ReferenceGrant, with
// the kubernetes.io/tls Secrets listeners use) into the model. Each object is checked on
// its own as the API server would (schema and the CRDs' validation rules: errors with a
// field path), then Resolve attaches routes to listeners as a Gateway API controller
// does and computes every object's status conditions. A route that does not attach, or
// a backend that does not resolve, is a status condition, not a load error: the same
// files work on a cluster, where the API server accepts them too.
package gatewayapi

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"skein.dev/skein/internal/model"
)

// Group is the Gateway API group.
const Group = "gateway.networking.k8s.io"

// Kind names.
const (
	KindGatewayClass   = "GatewayClass"
	KindGateway        = "Gateway"
	KindHTTPRoute      = "HTTPRoute"
	KindGRPCRoute      = "GRPCRoute"
	KindTLSRoute       = "TLSRoute"
	KindTCPRoute       = "TCPRoute"
	KindReferenceGrant = "ReferenceGrant"
)

// Versions lists the apiVersions accepted per kind: v1, and the older versions
// upstream v1.6 still serves for the kind (their schemas are the v1 one).
var Versions = map[string][]string{
	KindGatewayClass:   {Group + "/v1", Group + "/v1beta1"},
	KindGateway:        {Group + "/v1", Group + "/v1beta1"},
	KindHTTPRoute:      {Group + "/v1", Group + "/v1beta1"},
	KindGRPCRoute:      {Group + "/v1", Group + "/v1alpha2"},
	KindTLSRoute:       {Group + "/v1", Group + "/v1alpha2", Group + "/v1alpha3"},
	KindTCPRoute:       {Group + "/v1", Group + "/v1alpha2"},
	KindReferenceGrant: {Group + "/v1", Group + "/v1beta1", Group + "/v1alpha2"},
}

// Object is the shape the strict checker walks for a Gateway API kind: metadata and
// spec; status is computed by skein, never read from files.
type Object[T any] struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              T `json:"spec"`
}

// Meta is what Resolve needs of any object's metadata.
type Meta struct {
	APIVersion string
	Namespace  string
	Name       string
	Generation int64
	Created    time.Time
	Labels     map[string]string
	// Manifest is the object as written (JSON-compatible), for `skein get`.
	Manifest map[string]any
	// Order is the object's position in the load, for deterministic output.
	Order int
	// Source is where the object was read, for tools.
	Source model.Source
}

// Parsed objects, as Resolve takes them. The loader fills Meta.
type (
	GatewayClass struct {
		Meta
		Spec gwv1.GatewayClassSpec
	}
	Gateway struct {
		Meta
		Spec gwv1.GatewaySpec
	}
	HTTPRoute struct {
		Meta
		Spec gwv1.HTTPRouteSpec
	}
	GRPCRoute struct {
		Meta
		Spec gwv1.GRPCRouteSpec
	}
	TLSRoute struct {
		Meta
		Spec gwv1.TLSRouteSpec
	}
	TCPRoute struct {
		Meta
		Spec gwv1.TCPRouteSpec
	}
	ReferenceGrant struct {
		Meta
		Spec gwv1.ReferenceGrantSpec
	}
	// Secret is a Kubernetes Secret (listener certificates).
	Secret struct {
		Meta
		Type corev1.SecretType
		Data map[string][]byte
	}
	// Namespace is a Kubernetes Namespace: only its labels matter (allowedRoutes
	// selectors). Namespaces that no object declares exist with the label
	// kubernetes.io/metadata.name only.
	Namespace struct {
		Meta
	}
)
