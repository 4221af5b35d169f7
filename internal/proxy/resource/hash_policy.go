package resource

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// RouteAction.hash_policy fields the proxy accepts (docs/XDS.md).
func init() {
	allowedFields = append(allowedFields,
		"envoy.config.route.v3.RouteAction.hash_policy",
		"envoy.config.route.v3.RouteAction.HashPolicy.header",
		"envoy.config.route.v3.RouteAction.HashPolicy.cookie",
		"envoy.config.route.v3.RouteAction.HashPolicy.connection_properties",
		"envoy.config.route.v3.RouteAction.HashPolicy.query_parameter",
		"envoy.config.route.v3.RouteAction.HashPolicy.terminal",
		"envoy.config.route.v3.RouteAction.HashPolicy.Header.header_name",
		"envoy.config.route.v3.RouteAction.HashPolicy.Cookie.name",
		"envoy.config.route.v3.RouteAction.HashPolicy.Cookie.ttl",
		"envoy.config.route.v3.RouteAction.HashPolicy.Cookie.path",
		"envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties.source_ip",
		"envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter.name",
	)
}

// HashPolicy is one RouteAction.hash_policy entry: exactly one key source.
type HashPolicy struct {
	Header         string // canonical header name
	Cookie         *HashCookie
	SourceIP       bool
	QueryParameter string
	Terminal       bool
}

// HashCookie hashes on a cookie; with a TTL the proxy generates it when absent.
type HashCookie struct {
	Name   string
	Path   string
	TTL    time.Duration
	HasTTL bool
}

func hashPolicies(action *routev3.RouteAction) ([]HashPolicy, error) {
	var out []HashPolicy
	for i, hp := range action.GetHashPolicy() {
		field := fmt.Sprintf("route.hash_policy[%d]", i)
		p := HashPolicy{Terminal: hp.GetTerminal()}
		switch spec := hp.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
			if spec.Header.GetHeaderName() == "" {
				return nil, fmt.Errorf("%s.header.header_name: %w", field, errMissing)
			}
			p.Header = http.CanonicalHeaderKey(spec.Header.GetHeaderName())
		case *routev3.RouteAction_HashPolicy_Cookie_:
			c := spec.Cookie
			if c.GetName() == "" {
				return nil, fmt.Errorf("%s.cookie.name: %w", field, errMissing)
			}
			p.Cookie = &HashCookie{Name: c.GetName(), Path: c.GetPath()}
			if t := c.GetTtl(); t != nil {
				if err := t.CheckValid(); err != nil || t.AsDuration() < 0 {
					return nil, fmt.Errorf("%s.cookie.ttl invalid: %v", field, t)
				}
				p.Cookie.TTL, p.Cookie.HasTTL = t.AsDuration(), true
			}
		case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
			if !spec.ConnectionProperties.GetSourceIp() {
				return nil, fmt.Errorf("%s.connection_properties: source_ip must be true", field)
			}
			p.SourceIP = true
		case *routev3.RouteAction_HashPolicy_QueryParameter_:
			if spec.QueryParameter.GetName() == "" {
				return nil, fmt.Errorf("%s.query_parameter.name: %w", field, errMissing)
			}
			p.QueryParameter = spec.QueryParameter.GetName()
		default:
			return nil, errors.New(field + ": one of header, cookie, connection_properties or query_parameter is required")
		}
		out = append(out, p)
	}
	return out, nil
}
