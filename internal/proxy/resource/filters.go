package resource

import (
	"errors"
	"fmt"
	"net/http"

	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// HTTPFilter is one decoded HCM http_filters entry before the router: exactly one of
// its config fields is set.
type HTTPFilter struct {
	Name string
	RBAC *RBAC     // envoy.filters.http.rbac (nil when its rules are unset: disabled)
	JWT  *JWTAuthn // envoy.filters.http.jwt_authn
	// Fault and CORS mark envoy.filters.http.fault and envoy.filters.http.cors, which act
	// on the matched route's per-filter config (Route.Fault, Route.CORS).
	Fault bool
	CORS  bool
}

// NetworkFilter is one decoded network filter before the terminal one (tcp_proxy or
// http_connection_manager).
type NetworkFilter struct {
	Name string
	RBAC *RBAC // envoy.filters.network.rbac (nil when its rules are unset: disabled)
}

// httpFilterDecoders is the one place that says which HTTP filters the proxy runs and
// how each one's typed_config is decoded. The router is terminal and must come last.
var httpFilterDecoders = map[string]func(*anypb.Any) (HTTPFilter, error){
	"type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC": func(a *anypb.Any) (HTTPFilter, error) {
		pb := &httprbacv3.RBAC{}
		if err := a.UnmarshalTo(pb); err != nil {
			return HTTPFilter{}, err
		}
		r, err := httpRBAC(nil, pb)
		return HTTPFilter{RBAC: r}, err
	},
	"type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication": func(a *anypb.Any) (HTTPFilter, error) {
		pb := &jwtv3.JwtAuthentication{}
		if err := a.UnmarshalTo(pb); err != nil {
			return HTTPFilter{}, err
		}
		j, err := jwtAuthn(pb)
		return HTTPFilter{JWT: j}, err
	},
	faultTypeURL: decodeFaultFilter,
	corsTypeURL:  decodeCORSFilter,
}

// networkFilterDecoders is the same for network filters before the terminal one.
var networkFilterDecoders = map[string]func(*anypb.Any) (NetworkFilter, error){
	"type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC": func(a *anypb.Any) (NetworkFilter, error) {
		pb := &netrbacv3.RBAC{}
		if err := a.UnmarshalTo(pb); err != nil {
			return NetworkFilter{}, err
		}
		r, err := networkRBAC(pb)
		return NetworkFilter{RBAC: r}, err
	},
}

// httpFilters decodes an HCM's filter list: any number of known filters, then the router.
func httpFilters(pbs []*hcmv3.HttpFilter) ([]HTTPFilter, error) {
	if len(pbs) == 0 {
		return nil, errors.New("HttpConnectionManager.http_filters: the router is required")
	}
	var out []HTTPFilter
	for i, f := range pbs {
		tc := f.GetTypedConfig()
		field := fmt.Sprintf("HttpConnectionManager.http_filters[%d]", i)
		if f.GetName() == "" {
			return nil, fmt.Errorf("%s.name: %w", field, errMissing)
		}
		if i == len(pbs)-1 {
			if tc.GetTypeUrl() != routerTypeURL {
				return nil, fmt.Errorf("%s.typed_config: the last filter must be the router (%s), got %q", field, routerTypeURL, tc.GetTypeUrl())
			}
			if err := tc.UnmarshalTo(&routerv3.Router{}); err != nil {
				return nil, err
			}
			break
		}
		dec := httpFilterDecoders[tc.GetTypeUrl()]
		if dec == nil {
			return nil, fmt.Errorf("%s.typed_config: unsupported filter type %q (the router must be last)", field, tc.GetTypeUrl())
		}
		hf, err := dec(tc)
		if err != nil {
			return nil, fmt.Errorf("%s (%s): %w", field, f.GetName(), err)
		}
		hf.Name = f.GetName()
		out = append(out, hf)
	}
	return out, nil
}

func canonicalHeader(name string) string { return http.CanonicalHeaderKey(name) }
