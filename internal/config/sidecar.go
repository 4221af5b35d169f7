package config

import (
	"fmt"
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
			issues = append(issues, istio.ApplySidecarAnnotations(sc, annotationsOf(data))...)
			return sc, &spec, issues
		},
	}
}

// checkSidecarDefault refuses a second Sidecar without workloadSelector in one
// namespace: which one applies would depend on file order (Istio takes the oldest and
// istioctl analyze reports IST0109 as an error).
func (l *loader) checkSidecarDefault(o *object, defaults map[string]*object) {
	sc, ok := o.value.(*model.Sidecar)
	if !ok || o.failed || len(sc.WorkloadSelector) > 0 {
		return
	}
	if prev, dup := defaults[o.nn.Namespace]; dup {
		l.report(o, []strict.Issue{{Path: "spec.workloadSelector", Msg: fmt.Sprintf(
			"namespace %s already has Sidecar %s without workloadSelector at %s: only one may apply to the whole namespace", o.nn.Namespace, prev.name(), prev.src)}})
		return
	}
	defaults[o.nn.Namespace] = o
}
