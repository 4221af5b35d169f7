package config

import (
	"reflect"

	networking "istio.io/api/networking/v1alpha3"

	"skein.dev/skein/internal/config/istio"
	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// sidecarKind is Istio's Sidecar (networking.istio.io), the egress-hosts subset that
// scopes a proxy's config (internal/config/istio/sidecar.go).
func sidecarKind() kind {
	return kind{
		name: kindSidecar, apiVersions: istioVersions,
		checkType:  reflect.TypeFor[istioObject[networking.Sidecar]](),
		allowField: istio.AllowField,
		build: func(data []byte, nn model.NamespacedName, _ string) (any, any, []strict.Issue) {
			var spec networking.Sidecar
			if issues := decodeIstio(data, &spec); issues != nil {
				return nil, nil, issues
			}
			sc, issues := istio.Sidecar(nn, &spec)
			return sc, &spec, issues
		},
	}
}
