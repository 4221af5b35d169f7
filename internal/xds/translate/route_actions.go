package translate

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	previoushosts "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"skein.dev/skein/internal/model"
)

// Names of the HTTP filters route actions configure per route (typed_per_filter_config),
// and of skein's retry budget extension.
const (
	FaultFilterName       = "envoy.filters.http.fault"
	CORSFilterName        = "envoy.filters.http.cors"
	PreviousHostsName     = "envoy.retry_host_predicates.previous_hosts"
	RetryBudgetName       = "skein.retry_budget"
	RetryBudgetTypeURL    = "type.skein.dev/skein.retry.v1.RetryBudget"
	hostSelectionAttempts = 5
)

// GRPCCodes maps gRPC status names to codes (abort.grpcStatus).
var grpcCodes = map[string]uint32{
	"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
	"NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
	"FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
	"INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

// outboundHTTPFilters are the filters before the router of a sidecar's outbound HTTP
// connection managers, in Istio's order: CORS (answers preflights first), then fault
// injection. Both do nothing unless a route configures them.
func (b *builder) outboundHTTPFilters() []*hcm.HttpFilter {
	return []*hcm.HttpFilter{
		{Name: CORSFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: b.toAny(&corsv3.Cors{})}},
		{Name: FaultFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: b.toAny(&faultv3.HTTPFault{})}},
	}
}

// applyRouteExtras sets what a rule adds to each of its Envoy routes besides the match
// and the forwarding action: header edits, fault and CORS per-route configs.
func (b *builder) applyRouteExtras(r *route.Route, rule model.HTTPRoute) {
	h := rule.Headers
	if len(rule.Destinations) == 1 && rule.Redirect == nil {
		// One destination: its header edits are the route's, as Istio does.
		h = mergeHeaders(h, rule.Destinations[0].Headers)
	}
	if !h.Empty() {
		r.RequestHeadersToAdd = headerValueOptions(h.Request)
		r.RequestHeadersToRemove = h.Request.Remove
		r.ResponseHeadersToAdd = headerValueOptions(h.Response)
		r.ResponseHeadersToRemove = h.Response.Remove
	}
	if f := rule.Fault; f != nil {
		r.TypedPerFilterConfig = ensureMap(r.TypedPerFilterConfig)
		r.TypedPerFilterConfig[FaultFilterName] = b.toAny(faultConfig(f))
	}
	if c := rule.CORS; c != nil {
		// Optional: clients without a CORS filter (proxyless gRPC) may ignore it.
		r.TypedPerFilterConfig = ensureMap(r.TypedPerFilterConfig)
		r.TypedPerFilterConfig[CORSFilterName] = b.toAny(&route.FilterConfig{Config: b.toAny(corsConfig(c)), IsOptional: true})
	}
}

func ensureMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

func mergeHeaders(a, b *model.Headers) *model.Headers {
	if b.Empty() {
		return a
	}
	if a.Empty() {
		return b
	}
	merge := func(x, y model.HeaderOps) model.HeaderOps {
		out := model.HeaderOps{Set: map[string]string{}, Add: map[string]string{}}
		for k, v := range x.Set {
			out.Set[k] = v
		}
		for k, v := range y.Set {
			out.Set[k] = v
		}
		for k, v := range x.Add {
			out.Add[k] = v
		}
		for k, v := range y.Add {
			out.Add[k] = v
		}
		out.Remove = append(append([]string(nil), x.Remove...), y.Remove...)
		return out
	}
	return &model.Headers{Request: merge(a.Request, b.Request), Response: merge(a.Response, b.Response)}
}

// headerValueOptions renders set (overwrite) then add (append) edits, sorted by name.
func headerValueOptions(ops model.HeaderOps) []*core.HeaderValueOption {
	var out []*core.HeaderValueOption
	for _, k := range model.SortedKeys(ops.Set) {
		out = append(out, &core.HeaderValueOption{
			Header:       &core.HeaderValue{Key: k, Value: ops.Set[k]},
			AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	for _, k := range model.SortedKeys(ops.Add) {
		out = append(out, &core.HeaderValueOption{
			Header:       &core.HeaderValue{Key: k, Value: ops.Add[k]},
			AppendAction: core.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	return out
}

// redirectAction is Envoy's RedirectAction for a rule's redirect.
func redirectAction(rd *model.HTTPRedirect) *route.RedirectAction {
	a := &route.RedirectAction{HostRedirect: rd.Authority, PortRedirect: uint32(rd.Port)}
	switch {
	case rd.URI != "":
		a.PathRewriteSpecifier = &route.RedirectAction_PathRedirect{PathRedirect: rd.URI}
	case rd.PrefixRewrite != "":
		a.PathRewriteSpecifier = &route.RedirectAction_PrefixRewrite{PrefixRewrite: rd.PrefixRewrite}
	}
	if rd.Scheme != "" {
		a.SchemeRewriteSpecifier = &route.RedirectAction_SchemeRedirect{SchemeRedirect: rd.Scheme}
	}
	switch rd.Code {
	case 302:
		a.ResponseCode = route.RedirectAction_FOUND
	case 303:
		a.ResponseCode = route.RedirectAction_SEE_OTHER
	case 307:
		a.ResponseCode = route.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		a.ResponseCode = route.RedirectAction_PERMANENT_REDIRECT
	default:
		a.ResponseCode = route.RedirectAction_MOVED_PERMANENTLY
	}
	return a
}

// applyRewrite sets prefix_rewrite or regex_rewrite and host_rewrite_literal.
func applyRewrite(a *route.RouteAction, rw *model.HTTPRewrite) {
	if rw == nil {
		return
	}
	switch {
	case rw.URIRegex != nil:
		a.RegexRewrite = &matcher.RegexMatchAndSubstitute{
			Pattern:      &matcher.RegexMatcher{Regex: rw.URIRegex.Match},
			Substitution: rw.URIRegex.Rewrite,
		}
	case rw.URI != "":
		a.PrefixRewrite = rw.URI
	}
	if rw.Authority != "" {
		a.HostRewriteSpecifier = &route.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.Authority}
	}
}

// retryPolicy is Istio's translation: nil policy → the default; Attempts 0 → none.
func (b *builder) retryPolicy(p *model.RetryPolicy) *route.RetryPolicy {
	if p == nil {
		p = model.DefaultRetryPolicy()
	}
	if p.Attempts <= 0 {
		return nil
	}
	out := &route.RetryPolicy{
		RetryOn:    strings.Join(p.RetryOn, ","),
		NumRetries: wrapperspb.UInt32(uint32(p.Attempts)),
		RetryHostPredicate: []*route.RetryPolicy_RetryHostPredicate{{
			Name:       PreviousHostsName,
			ConfigType: &route.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: b.toAny(&previoushosts.PreviousHostsPredicate{})},
		}},
		HostSelectionRetryMaxAttempts: hostSelectionAttempts,
	}
	if p.IgnorePreviousHosts != nil && !*p.IgnorePreviousHosts {
		out.RetryHostPredicate = nil
	}
	if p.BackOff > 0 {
		out.RetryBackOff = &route.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(p.BackOff)}
	}
	for _, c := range p.RetriableStatusCodes {
		out.RetriableStatusCodes = append(out.RetriableStatusCodes, uint32(c))
	}
	if p.PerTryTimeout > 0 {
		out.PerTryTimeout = durationpb.New(p.PerTryTimeout)
	}
	if bud := p.Budget; bud != nil {
		out.RetryOptionsPredicates = []*core.TypedExtensionConfig{{
			Name:        RetryBudgetName,
			TypedConfig: b.toAny(retryBudgetStruct(bud)),
		}}
	}
	return out
}

// retryBudgetStruct carries skein's retry budget as an xds.type.v3.TypedStruct (the
// xDS way to configure an extension whose proto Envoy does not know).
func retryBudgetStruct(bud *model.RetryBudget) *xdstype.TypedStruct {
	return &xdstype.TypedStruct{
		TypeUrl: RetryBudgetTypeURL,
		Value: &structpb.Struct{Fields: map[string]*structpb.Value{
			"retry_ratio":            structpb.NewNumberValue(bud.Ratio),
			"min_retries_per_second": structpb.NewNumberValue(float64(bud.MinPerSecond)),
			"ttl":                    structpb.NewStringValue(durationString(bud.TTL)),
		}},
	}
}

// durationString is the protobuf JSON form of a duration ("10s", "0.500s").
func durationString(d time.Duration) string {
	s := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	return s + "s"
}

// percent is an Istio percentage (0..100, fractional) as Envoy's FractionalPercent
// per million.
func percent(p float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(math.Round(p * 10000)), Denominator: typev3.FractionalPercent_MILLION}
}

func faultConfig(f *model.HTTPFault) *faultv3.HTTPFault {
	out := &faultv3.HTTPFault{}
	if d := f.Delay; d != nil {
		out.Delay = &faultcommon.FaultDelay{
			FaultDelaySecifier: &faultcommon.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d.Fixed)},
			Percentage:         percent(d.Percent),
		}
	}
	if a := f.Abort; a != nil {
		out.Abort = &faultv3.FaultAbort{Percentage: percent(a.Percent)}
		if a.GRPCStatus != "" {
			out.Abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: grpcCodes[a.GRPCStatus]}
		} else {
			out.Abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(a.HTTPStatus)}
		}
	}
	return out
}

func corsConfig(c *model.CORSPolicy) *corsv3.CorsPolicy {
	out := &corsv3.CorsPolicy{
		AllowMethods:  strings.Join(c.AllowMethods, ","),
		AllowHeaders:  strings.Join(c.AllowHeaders, ","),
		ExposeHeaders: strings.Join(c.ExposeHeaders, ","),
	}
	for _, o := range c.AllowOrigins {
		sm, err := stringMatcher(o)
		if err == nil {
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, sm)
		}
	}
	if c.MaxAge > 0 {
		out.MaxAge = strconv.Itoa(int(c.MaxAge / time.Second))
	}
	if c.AllowCredentials != nil {
		out.AllowCredentials = wrapperspb.Bool(*c.AllowCredentials)
	}
	return out
}

// mirrorPolicies resolves mirror destinations like route destinations.
func (b *builder) mirrorPolicies(vs *model.VirtualService, mirrors []model.Mirror, sp servicePort) ([]*route.RouteAction_RequestMirrorPolicy, error) {
	var out []*route.RouteAction_RequestMirrorPolicy
	for _, m := range mirrors {
		cs, err := b.destinationClusters(vs, []model.RouteDestination{m.Destination}, sp)
		if err != nil {
			return nil, err
		}
		out = append(out, &route.RouteAction_RequestMirrorPolicy{
			Cluster:         cs[0].name,
			RuntimeFraction: &core.RuntimeFractionalPercent{DefaultValue: percent(m.Percent)},
		})
	}
	return out, nil
}

// matchExtras adds the match conditions beyond path and headers.
func matchExtras(rm *route.RouteMatch, m model.HTTPMatch) error {
	if m.IgnoreURICase {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	pseudo := []struct {
		name string
		sm   *model.StringMatch
	}{{":authority", m.Authority}, {":method", m.Method}, {":scheme", m.Scheme}}
	for _, p := range pseudo {
		if p.sm == nil {
			continue
		}
		hm, err := routeHeaderMatcher(p.name, *p.sm, false)
		if err != nil {
			return err
		}
		rm.Headers = append(rm.Headers, hm)
	}
	for _, name := range model.SortedKeys(m.WithoutHeaders) {
		hm, err := routeHeaderMatcher(name, m.WithoutHeaders[name], true)
		if err != nil {
			return fmt.Errorf("withoutHeaders %s: %w", name, err)
		}
		rm.Headers = append(rm.Headers, hm)
	}
	for _, name := range model.SortedKeys(m.QueryParams) {
		q := m.QueryParams[name]
		qm := &route.QueryParameterMatcher{Name: name}
		if q.Kind == model.MatchPresent {
			qm.QueryParameterMatchSpecifier = &route.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			sm, err := stringMatcher(q)
			if err != nil {
				return fmt.Errorf("queryParams %s: %w", name, err)
			}
			qm.QueryParameterMatchSpecifier = &route.QueryParameterMatcher_StringMatch{StringMatch: sm}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	return nil
}

// routeHeaderMatcher is an Envoy HeaderMatcher; a present-kind match checks presence.
func routeHeaderMatcher(name string, s model.StringMatch, invert bool) (*route.HeaderMatcher, error) {
	hm := &route.HeaderMatcher{Name: name, InvertMatch: invert}
	if s.Kind == model.MatchPresent {
		hm.HeaderMatchSpecifier = &route.HeaderMatcher_PresentMatch{PresentMatch: true}
		return hm, nil
	}
	sm, err := stringMatcher(s)
	if err != nil {
		return nil, fmt.Errorf("header %s: %w", name, err)
	}
	hm.HeaderMatchSpecifier = &route.HeaderMatcher_StringMatch{StringMatch: sm}
	return hm, nil
}

// sourceVariant names which source-conditioned matches of a VirtualService apply to
// this proxy, so virtual hosts built once per Index are shared only by proxies that see
// the same routes ("" when the VirtualService has no source conditions).
func (b *builder) sourceVariant(vs *model.VirtualService) string {
	var sb strings.Builder
	for _, r := range vs.HTTP {
		for i := range r.Matches {
			m := &r.Matches[i]
			if len(m.SourceLabels) == 0 && m.SourceNamespace == "" {
				continue
			}
			if m.AppliesToSource(b.proxy) {
				sb.WriteByte('1')
			} else {
				sb.WriteByte('0')
			}
		}
	}
	return sb.String()
}
