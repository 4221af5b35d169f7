package resource

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs and names of the route-level extensions the proxy implements.
const (
	faultTypeURL         = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
	corsTypeURL          = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
	corsPolicyTypeURL    = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
	filterConfigTypeURL  = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
	previousHostsTypeURL = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
	typedStructTypeURL   = "type.googleapis.com/xds.type.v3.TypedStruct"
	// RetryBudgetTypeURL is skein's retry budget, carried in a TypedStruct.
	RetryBudgetTypeURL = "type.skein.dev/skein.retry.v1.RetryBudget"
)

// Envoy's retry back-off defaults.
const (
	defaultRetryBaseInterval = 25 * time.Millisecond
	maxPerRouteHeaderOps     = 1000
)

// decodeFaultFilter and decodeCORSFilter decode the filters' own configs: the proxy
// runs them from the route's per-filter config, so the filter-level config must be
// empty (as Istio sends it).
func decodeFaultFilter(a *anypb.Any) (HTTPFilter, error) {
	pb := &faultv3.HTTPFault{}
	if err := a.UnmarshalTo(pb); err != nil {
		return HTTPFilter{}, err
	}
	if pb.GetDelay() != nil || pb.GetAbort() != nil {
		return HTTPFilter{}, errors.New("HTTPFault: only per-route fault configuration (typed_per_filter_config) is supported; the filter's own config must be empty")
	}
	return HTTPFilter{Fault: true}, nil
}

func decodeCORSFilter(a *anypb.Any) (HTTPFilter, error) {
	if err := a.UnmarshalTo(&corsv3.Cors{}); err != nil {
		return HTTPFilter{}, err
	}
	return HTTPFilter{CORS: true}, nil
}

// routeForward decodes the forwarding parts of a RouteAction beyond its clusters.
func routeForward(r *Route, a *routev3.RouteAction) error {
	switch {
	case a.GetRegexRewrite() != nil && a.GetPrefixRewrite() != "":
		return errors.New("route: prefix_rewrite and regex_rewrite are exclusive")
	case a.GetRegexRewrite() != nil:
		rr := a.GetRegexRewrite()
		re, err := regexp.Compile(rr.GetPattern().GetRegex())
		if err != nil || rr.GetPattern().GetRegex() == "" {
			return fmt.Errorf("route.regex_rewrite.pattern: invalid regex %q", rr.GetPattern().GetRegex())
		}
		r.Rewrite.Regex, r.Rewrite.Substitution = re, goSubstitution(rr.GetSubstitution())
	case a.GetPrefixRewrite() != "":
		r.Rewrite.Prefix, r.Rewrite.HasPrefix = a.GetPrefixRewrite(), true
	}
	r.Rewrite.Host = a.GetHostRewriteLiteral()
	if rp := a.GetRetryPolicy(); rp != nil {
		p, err := retryPolicy(rp)
		if err != nil {
			return fmt.Errorf("route.retry_policy: %w", err)
		}
		r.Retry = p
	}
	for i, m := range a.GetRequestMirrorPolicies() {
		field := fmt.Sprintf("route.request_mirror_policies[%d]", i)
		if m.GetCluster() == "" {
			return fmt.Errorf("%s.cluster: %w", field, errMissing)
		}
		mi := Mirror{Cluster: m.GetCluster(), Numerator: 1, Denominator: 1}
		if rf := m.GetRuntimeFraction(); rf != nil {
			n, d, err := fraction(rf.GetDefaultValue())
			if err != nil {
				return fmt.Errorf("%s.runtime_fraction.default_value: %w", field, err)
			}
			mi.Numerator, mi.Denominator = n, d
		}
		r.Mirrors = append(r.Mirrors, mi)
	}
	for i, c := range a.GetWeightedClusters().GetClusters() {
		if i >= len(r.Clusters) {
			break
		}
		field := fmt.Sprintf("route.weighted_clusters.clusters[%d]", i)
		var err error
		if r.Clusters[i].RequestHeaders, err = headerMutation(c.GetRequestHeadersToAdd(), c.GetRequestHeadersToRemove()); err != nil {
			return fmt.Errorf("%s.request_headers: %w", field, err)
		}
		if r.Clusters[i].ResponseHeaders, err = headerMutation(c.GetResponseHeadersToAdd(), c.GetResponseHeadersToRemove()); err != nil {
			return fmt.Errorf("%s.response_headers: %w", field, err)
		}
	}
	return nil
}

// routeExtras decodes what a Route carries besides its match and action.
func routeExtras(r *Route, pb *routev3.Route) error {
	var err error
	if r.RequestHeaders, err = headerMutation(pb.GetRequestHeadersToAdd(), pb.GetRequestHeadersToRemove()); err != nil {
		return fmt.Errorf("request_headers: %w", err)
	}
	if r.ResponseHeaders, err = headerMutation(pb.GetResponseHeadersToAdd(), pb.GetResponseHeadersToRemove()); err != nil {
		return fmt.Errorf("response_headers: %w", err)
	}
	for _, name := range sortedKeys(pb.GetTypedPerFilterConfig()) {
		a := pb.GetTypedPerFilterConfig()[name]
		field := fmt.Sprintf("typed_per_filter_config[%q]", name)
		if a.GetTypeUrl() == filterConfigTypeURL {
			fc := &routev3.FilterConfig{}
			if err := a.UnmarshalTo(fc); err != nil {
				return fmt.Errorf("%s: %w", field, err)
			}
			if fc.GetDisabled() {
				continue
			}
			a = fc.GetConfig()
		}
		switch a.GetTypeUrl() {
		case faultTypeURL:
			f, err := faultConfig(a)
			if err != nil {
				return fmt.Errorf("%s: %w", field, err)
			}
			r.Fault = f
		case corsPolicyTypeURL:
			c, err := corsPolicy(a)
			if err != nil {
				return fmt.Errorf("%s: %w", field, err)
			}
			r.CORS = c
		default:
			return fmt.Errorf("%s: unsupported per-route config type %q", field, a.GetTypeUrl())
		}
	}
	return nil
}

func headerMutation(add []*corev3.HeaderValueOption, remove []string) (HeaderMutation, error) {
	var m HeaderMutation
	if len(add)+len(remove) > maxPerRouteHeaderOps {
		return m, fmt.Errorf("more than %d header edits", maxPerRouteHeaderOps)
	}
	for _, name := range remove {
		if name == "" || strings.HasPrefix(name, ":") || strings.EqualFold(name, "host") {
			return m, fmt.Errorf("cannot remove header %q", name)
		}
		m.Remove = append(m.Remove, http.CanonicalHeaderKey(name))
	}
	for i, o := range add {
		key := o.GetHeader().GetKey()
		if key == "" || strings.HasPrefix(key, ":") || strings.EqualFold(key, "host") {
			return m, fmt.Errorf("[%d].header.key: cannot set header %q", i, key)
		}
		if strings.ContainsAny(o.GetHeader().GetValue(), "\r\n\x00") {
			return m, fmt.Errorf("[%d].header.value: invalid characters", i)
		}
		hv := HeaderValue{Key: http.CanonicalHeaderKey(key), Value: o.GetHeader().GetValue()}
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			hv.Action = AppendIfExistsOrAdd
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			hv.Action = AddIfAbsent
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			hv.Action = OverwriteIfExistsOrAdd
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			hv.Action = OverwriteIfExists
		default:
			return m, fmt.Errorf("[%d].append_action: unknown %v", i, o.GetAppendAction())
		}
		m.Add = append(m.Add, hv)
	}
	return m, nil
}

func redirectAction(pb *routev3.RedirectAction) (*Redirect, error) {
	rd := &Redirect{Host: pb.GetHostRedirect(), Port: int(pb.GetPortRedirect()), Path: pb.GetPathRedirect(), Scheme: pb.GetSchemeRedirect()}
	if p, ok := pb.GetPathRewriteSpecifier().(*routev3.RedirectAction_PrefixRewrite); ok {
		rd.Prefix, rd.HasPrefix = p.PrefixRewrite, true
		if rd.Prefix != "" && !strings.HasPrefix(rd.Prefix, "/") {
			return nil, fmt.Errorf("prefix_rewrite %q must start with /", rd.Prefix)
		}
	}
	if rd.Port > 65535 {
		return nil, fmt.Errorf("port_redirect %d out of range", rd.Port)
	}
	if rd.Path != "" && !strings.HasPrefix(rd.Path, "/") {
		return nil, fmt.Errorf("path_redirect %q must start with /", rd.Path)
	}
	if strings.ContainsAny(rd.Host+rd.Path+rd.Scheme, "\r\n\x00 ") {
		return nil, errors.New("redirect: invalid characters")
	}
	switch pb.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		rd.Code = http.StatusMovedPermanently
	case routev3.RedirectAction_FOUND:
		rd.Code = http.StatusFound
	case routev3.RedirectAction_SEE_OTHER:
		rd.Code = http.StatusSeeOther
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		rd.Code = http.StatusTemporaryRedirect
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		rd.Code = http.StatusPermanentRedirect
	default:
		return nil, fmt.Errorf("response_code %v unknown", pb.GetResponseCode())
	}
	return rd, nil
}

func retryPolicy(pb *routev3.RetryPolicy) (*RetryPolicy, error) {
	p := &RetryPolicy{NumRetries: 1, HostSelectionAttempts: int(pb.GetHostSelectionRetryMaxAttempts()), BaseInterval: defaultRetryBaseInterval}
	if n := pb.GetNumRetries(); n != nil {
		p.NumRetries = int(n.GetValue())
	}
	if p.NumRetries > 100 {
		return nil, fmt.Errorf("num_retries %d: at most 100", p.NumRetries)
	}
	for _, part := range strings.Split(pb.GetRetryOn(), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		on, ok := retryOnNames[part]
		if !ok {
			return nil, fmt.Errorf("retry_on: unsupported condition %q", part)
		}
		p.On |= on
	}
	for _, c := range pb.GetRetriableStatusCodes() {
		if c < 100 || c > 599 {
			return nil, fmt.Errorf("retriable_status_codes: %d is not an HTTP status", c)
		}
		p.StatusCodes = append(p.StatusCodes, int(c))
	}
	if t := pb.GetPerTryTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() < 0 {
			return nil, fmt.Errorf("per_try_timeout invalid: %v", t)
		}
		p.PerTryTimeout = t.AsDuration()
	}
	if bo := pb.GetRetryBackOff(); bo != nil {
		if err := bo.GetBaseInterval().CheckValid(); err != nil || bo.GetBaseInterval().AsDuration() <= 0 {
			return nil, errors.New("retry_back_off.base_interval must be positive")
		}
		p.BaseInterval = bo.GetBaseInterval().AsDuration()
		if bo.GetMaxInterval() != nil {
			p.MaxInterval = bo.GetMaxInterval().AsDuration()
			if p.MaxInterval < p.BaseInterval {
				return nil, errors.New("retry_back_off.max_interval must not be less than base_interval")
			}
		}
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = 10 * p.BaseInterval // Envoy's default
	}
	for i, hp := range pb.GetRetryHostPredicate() {
		if hp.GetTypedConfig().GetTypeUrl() != previousHostsTypeURL {
			return nil, fmt.Errorf("retry_host_predicate[%d]: unsupported predicate %q", i, hp.GetTypedConfig().GetTypeUrl())
		}
		if err := hp.GetTypedConfig().UnmarshalTo(&previoushostsv3.PreviousHostsPredicate{}); err != nil {
			return nil, err
		}
		p.PreviousHosts = true
	}
	for i, op := range pb.GetRetryOptionsPredicates() {
		b, err := retryBudget(op.GetTypedConfig())
		if err != nil {
			return nil, fmt.Errorf("retry_options_predicates[%d] (%s): %w", i, op.GetName(), err)
		}
		p.Budget = b
	}
	return p, nil
}

// retryBudget decodes skein's retry budget from a TypedStruct.
func retryBudget(a *anypb.Any) (*RetryBudget, error) {
	if a.GetTypeUrl() != typedStructTypeURL {
		return nil, fmt.Errorf("unsupported type %q (want a TypedStruct of %s)", a.GetTypeUrl(), RetryBudgetTypeURL)
	}
	ts := &xdstype.TypedStruct{}
	if err := a.UnmarshalTo(ts); err != nil {
		return nil, err
	}
	if ts.GetTypeUrl() != RetryBudgetTypeURL {
		return nil, fmt.Errorf("unsupported extension %q", ts.GetTypeUrl())
	}
	b := &RetryBudget{TTL: 10 * time.Second}
	for k, v := range ts.GetValue().GetFields() {
		switch k {
		case "retry_ratio":
			b.Ratio = v.GetNumberValue()
		case "min_retries_per_second":
			b.MinPerSecond = v.GetNumberValue()
		case "ttl":
			d, err := time.ParseDuration(v.GetStringValue())
			if err != nil || d < time.Second || d > time.Minute {
				return nil, fmt.Errorf("ttl %q: a duration from 1s to 60s", v.GetStringValue())
			}
			b.TTL = d
		default:
			return nil, fmt.Errorf("unknown field %q", k)
		}
	}
	if b.Ratio < 0 || b.Ratio > 1000 || b.MinPerSecond < 0 || b.MinPerSecond > 1e6 {
		return nil, errors.New("retry_ratio must be in [0, 1000] and min_retries_per_second in [0, 1e6]")
	}
	return b, nil
}

func fraction(fp *typev3.FractionalPercent) (uint32, uint32, error) {
	var d uint32
	switch fp.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		d = 100
	case typev3.FractionalPercent_TEN_THOUSAND:
		d = 10000
	case typev3.FractionalPercent_MILLION:
		d = 1000000
	default:
		return 0, 0, fmt.Errorf("denominator %v unknown", fp.GetDenominator())
	}
	// Envoy caps the numerator at the denominator.
	return min(fp.GetNumerator(), d), d, nil
}

func faultConfig(a *anypb.Any) (*Fault, error) {
	pb := &faultv3.HTTPFault{}
	if err := a.UnmarshalTo(pb); err != nil {
		return nil, err
	}
	f := &Fault{AbortGRPC: -1}
	if d := pb.GetDelay(); d != nil {
		fd := d.GetFixedDelay()
		if fd == nil {
			return nil, errors.New("delay.fixed_delay: required")
		}
		if err := fd.CheckValid(); err != nil || fd.AsDuration() < 0 {
			return nil, errors.New("delay.fixed_delay invalid")
		}
		f.HasDelay, f.Delay = true, fd.AsDuration()
		f.DelayNumerator, f.DelayDenom = 100, 100
		if d.GetPercentage() != nil {
			n, dn, err := fraction(d.GetPercentage())
			if err != nil {
				return nil, fmt.Errorf("delay.percentage: %w", err)
			}
			f.DelayNumerator, f.DelayDenom = n, dn
		}
	}
	if ab := pb.GetAbort(); ab != nil {
		f.HasAbort = true
		switch et := ab.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if et.HttpStatus < 200 || et.HttpStatus > 599 {
				return nil, fmt.Errorf("abort.http_status %d out of [200, 599]", et.HttpStatus)
			}
			f.AbortHTTP = int(et.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			if et.GrpcStatus > 16 {
				return nil, fmt.Errorf("abort.grpc_status %d unknown", et.GrpcStatus)
			}
			f.AbortGRPC = int(et.GrpcStatus)
		default:
			return nil, errors.New("abort: http_status or grpc_status is required")
		}
		f.AbortNumerator, f.AbortDenom = 100, 100
		if ab.GetPercentage() != nil {
			n, dn, err := fraction(ab.GetPercentage())
			if err != nil {
				return nil, fmt.Errorf("abort.percentage: %w", err)
			}
			f.AbortNumerator, f.AbortDenom = n, dn
		}
	}
	return f, nil
}

func corsPolicy(a *anypb.Any) (*CORS, error) {
	pb := &corsv3.CorsPolicy{}
	if err := a.UnmarshalTo(pb); err != nil {
		return nil, err
	}
	c := &CORS{
		AllowMethods:     pb.GetAllowMethods(),
		AllowHeaders:     pb.GetAllowHeaders(),
		ExposeHeaders:    pb.GetExposeHeaders(),
		MaxAge:           pb.GetMaxAge(),
		AllowCredentials: pb.GetAllowCredentials().GetValue(),
	}
	for i, o := range pb.GetAllowOriginStringMatch() {
		m, err := stringMatcher(o, fmt.Sprintf("allow_origin_string_match[%d]", i))
		if err != nil {
			return nil, err
		}
		c.AllowOrigins = append(c.AllowOrigins, m)
	}
	for _, v := range []string{c.AllowMethods, c.AllowHeaders, c.ExposeHeaders, c.MaxAge} {
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, errors.New("invalid characters in a CORS header value")
		}
	}
	return c, nil
}

var backrefs = regexp.MustCompile(`\\([0-9])`)

// goSubstitution turns an Envoy regex_rewrite substitution (\1 names a group) into Go's
// regexp.Expand syntax (${1}), keeping other dollars literal.
func goSubstitution(s string) string {
	s = strings.ReplaceAll(s, "$", "$$")
	return backrefs.ReplaceAllString(s, "$${$1}")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
