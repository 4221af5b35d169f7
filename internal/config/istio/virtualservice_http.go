package istio

import (
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// The VirtualService HTTP features beyond plain weighted routing: richer matches,
// redirect, rewrite, header edits, retries, fault injection, mirroring and CORS.
func init() {
	allowFields(
		"istio.networking.v1alpha3.HTTPMatchRequest.scheme",
		"istio.networking.v1alpha3.HTTPMatchRequest.method",
		"istio.networking.v1alpha3.HTTPMatchRequest.authority",
		"istio.networking.v1alpha3.HTTPMatchRequest.without_headers",
		"istio.networking.v1alpha3.HTTPMatchRequest.query_params",
		"istio.networking.v1alpha3.HTTPMatchRequest.ignore_uri_case",
		"istio.networking.v1alpha3.HTTPMatchRequest.source_labels",
		"istio.networking.v1alpha3.HTTPMatchRequest.source_namespace",

		"istio.networking.v1alpha3.HTTPRoute.redirect",
		"istio.networking.v1alpha3.HTTPRedirect.uri",
		"istio.networking.v1alpha3.HTTPRedirect.authority",
		"istio.networking.v1alpha3.HTTPRedirect.port",
		"istio.networking.v1alpha3.HTTPRedirect.scheme",
		"istio.networking.v1alpha3.HTTPRedirect.redirect_code",

		"istio.networking.v1alpha3.HTTPRoute.rewrite",
		"istio.networking.v1alpha3.HTTPRewrite.uri",
		"istio.networking.v1alpha3.HTTPRewrite.authority",
		"istio.networking.v1alpha3.HTTPRewrite.uri_regex_rewrite",
		"istio.networking.v1alpha3.RegexRewrite.match",
		"istio.networking.v1alpha3.RegexRewrite.rewrite",

		"istio.networking.v1alpha3.HTTPRoute.headers",
		"istio.networking.v1alpha3.HTTPRouteDestination.headers",
		"istio.networking.v1alpha3.Headers.request",
		"istio.networking.v1alpha3.Headers.response",
		"istio.networking.v1alpha3.Headers.HeaderOperations.set",
		"istio.networking.v1alpha3.Headers.HeaderOperations.add",
		"istio.networking.v1alpha3.Headers.HeaderOperations.remove",

		"istio.networking.v1alpha3.HTTPRoute.retries",
		"istio.networking.v1alpha3.HTTPRetry.attempts",
		"istio.networking.v1alpha3.HTTPRetry.per_try_timeout",
		"istio.networking.v1alpha3.HTTPRetry.retry_on",
		"istio.networking.v1alpha3.HTTPRetry.backoff",
		"istio.networking.v1alpha3.HTTPRetry.retry_ignore_previous_hosts",

		"istio.networking.v1alpha3.HTTPRoute.fault",
		"istio.networking.v1alpha3.HTTPFaultInjection.delay",
		"istio.networking.v1alpha3.HTTPFaultInjection.abort",
		"istio.networking.v1alpha3.HTTPFaultInjection.Delay.fixed_delay",
		"istio.networking.v1alpha3.HTTPFaultInjection.Delay.percentage",
		"istio.networking.v1alpha3.HTTPFaultInjection.Abort.http_status",
		"istio.networking.v1alpha3.HTTPFaultInjection.Abort.grpc_status",
		"istio.networking.v1alpha3.HTTPFaultInjection.Abort.percentage",
		"istio.networking.v1alpha3.Percent.value",

		"istio.networking.v1alpha3.HTTPRoute.mirror",
		"istio.networking.v1alpha3.HTTPRoute.mirror_percentage",
		"istio.networking.v1alpha3.HTTPRoute.mirrors",
		"istio.networking.v1alpha3.HTTPMirrorPolicy.destination",
		"istio.networking.v1alpha3.HTTPMirrorPolicy.percentage",

		"istio.networking.v1alpha3.HTTPRoute.cors_policy",
		"istio.networking.v1alpha3.CorsPolicy.allow_origins",
		"istio.networking.v1alpha3.CorsPolicy.allow_methods",
		"istio.networking.v1alpha3.CorsPolicy.allow_headers",
		"istio.networking.v1alpha3.CorsPolicy.expose_headers",
		"istio.networking.v1alpha3.CorsPolicy.max_age",
		"istio.networking.v1alpha3.CorsPolicy.allow_credentials",
	)
}

// httpMatchExtras reads the match conditions beyond uri, headers and port.
func httpMatchExtras(m *networking.HTTPMatchRequest, hm *model.HTTPMatch, mpath string, is *issues) {
	if m.GetScheme() != nil {
		sm := stringMatch(m.GetScheme(), strict.Field(mpath, "scheme"), is)
		hm.Scheme = &sm
	}
	if m.GetMethod() != nil {
		sm := stringMatch(m.GetMethod(), strict.Field(mpath, "method"), is)
		hm.Method = &sm
	}
	if m.GetAuthority() != nil {
		sm := stringMatch(m.GetAuthority(), strict.Field(mpath, "authority"), is)
		hm.Authority = &sm
	}
	hm.WithoutHeaders = presenceMatches(m.GetWithoutHeaders(), strict.Field(mpath, "withoutHeaders"), is)
	hm.QueryParams = presenceMatches(m.GetQueryParams(), strict.Field(mpath, "queryParams"), is)
	for name, q := range hm.QueryParams {
		if q.Kind == model.MatchPrefix {
			is.add(strict.Key(strict.Field(mpath, "queryParams"), name), "query parameters match exact or regex only (as Istio)")
		}
	}
	hm.IgnoreURICase = m.GetIgnoreUriCase()
	if len(m.GetSourceLabels()) > 0 {
		hm.SourceLabels = map[string]string{}
		for k, v := range m.GetSourceLabels() {
			hm.SourceLabels[k] = v
		}
	}
	hm.SourceNamespace = m.GetSourceNamespace()
}

// presenceMatches reads a map of StringMatch in which an empty match checks presence
// (Istio's headers, withoutHeaders and queryParams).
func presenceMatches(in map[string]*networking.StringMatch, path string, is *issues) map[string]model.StringMatch {
	if len(in) == 0 {
		return nil
	}
	out := map[string]model.StringMatch{}
	for _, name := range model.SortedKeys(in) {
		p := strict.Key(path, name)
		if name == "" {
			is.add(p, "name must not be empty")
		}
		if in[name].GetMatchType() == nil {
			out[name] = model.StringMatch{Kind: model.MatchPresent}
			continue
		}
		out[name] = stringMatch(in[name], p, is)
	}
	return out
}

// httpActions reads everything of an HTTP route besides its matches, destinations and
// timeout.
func httpActions(r *networking.HTTPRoute, out *model.HTTPRoute, path, ns, suffix string, is *issues) {
	if rd := r.GetRedirect(); rd != nil {
		out.Redirect = redirect(rd, strict.Field(path, "redirect"), is)
		if len(r.GetRoute()) > 0 {
			is.add(strict.Field(path, "redirect"), "redirect and route cannot both be set")
		}
		if r.GetRewrite() != nil {
			is.add(strict.Field(path, "rewrite"), "rewrite cannot be used with redirect")
		}
	}
	if rw := r.GetRewrite(); rw != nil {
		out.Rewrite = rewrite(rw, strict.Field(path, "rewrite"), is)
	}
	out.Headers = headers(r.GetHeaders(), strict.Field(path, "headers"), is)
	for i, d := range r.GetRoute() {
		if h := headers(d.GetHeaders(), strict.Field(strict.Index(strict.Field(path, "route"), i), "headers"), is); h != nil && i < len(out.Destinations) {
			out.Destinations[i].Headers = h
		}
	}
	if rt := r.GetRetries(); rt != nil {
		out.Retries = retries(rt, strict.Field(path, "retries"), is)
	}
	if f := r.GetFault(); f != nil {
		out.Fault = fault(f, strict.Field(path, "fault"), is)
	}
	out.Mirrors = mirrors(r, path, ns, suffix, is)
	if c := r.GetCorsPolicy(); c != nil {
		out.CORS = cors(c, strict.Field(path, "corsPolicy"), is)
	}
}

var redirectCodes = []uint32{301, 302, 303, 307, 308}

func redirect(rd *networking.HTTPRedirect, path string, is *issues) *model.HTTPRedirect {
	out := &model.HTTPRedirect{URI: rd.GetUri(), Authority: rd.GetAuthority(), Scheme: rd.GetScheme(), Port: int(rd.GetPort()), Code: int(rd.GetRedirectCode())}
	if out.URI == "" && out.Authority == "" && out.Scheme == "" && out.Port == 0 {
		is.add(path, "one of uri, authority, port or scheme is required")
	}
	if out.URI != "" && !strings.HasPrefix(out.URI, "/") {
		is.add(strict.Field(path, "uri"), "uri %q must start with /", out.URI)
	}
	if out.Port < 0 || out.Port > 65535 {
		is.add(strict.Field(path, "port"), "port %d out of range [1, 65535]", out.Port)
	}
	if out.Scheme != "" && out.Scheme != "http" && out.Scheme != "https" {
		is.add(strict.Field(path, "scheme"), "scheme %q: http or https", out.Scheme)
	}
	if out.Code == 0 {
		out.Code = 301
	} else if !slices.Contains(redirectCodes, uint32(out.Code)) {
		is.add(strict.Field(path, "redirectCode"), "redirect code %d: one of 301, 302, 303, 307, 308", out.Code)
	}
	return out
}

func rewrite(rw *networking.HTTPRewrite, path string, is *issues) *model.HTTPRewrite {
	out := &model.HTTPRewrite{URI: rw.GetUri(), Authority: rw.GetAuthority()}
	if rr := rw.GetUriRegexRewrite(); rr != nil {
		rpath := strict.Field(path, "uriRegexRewrite")
		out.URIRegex = &model.RegexRewrite{Match: rr.GetMatch(), Rewrite: rr.GetRewrite()}
		if rr.GetMatch() == "" {
			is.add(strict.Field(rpath, "match"), "match is required")
		} else if _, err := regexp.Compile(rr.GetMatch()); err != nil {
			is.add(strict.Field(rpath, "match"), "invalid RE2 regular expression: %v", err)
		}
		if out.URI != "" {
			is.add(rpath, "uri and uriRegexRewrite cannot both be set")
		}
	}
	if out.URI == "" && out.Authority == "" && out.URIRegex == nil {
		is.add(path, "one of uri, uriRegexRewrite or authority is required")
	}
	return out
}

func headers(h *networking.Headers, path string, is *issues) *model.Headers {
	if h == nil {
		return nil
	}
	out := &model.Headers{
		Request:  headerOps(h.GetRequest(), strict.Field(path, "request"), is),
		Response: headerOps(h.GetResponse(), strict.Field(path, "response"), is),
	}
	if out.Empty() {
		return nil
	}
	return out
}

func headerOps(o *networking.Headers_HeaderOperations, path string, is *issues) model.HeaderOps {
	var out model.HeaderOps
	check := func(p, name string) {
		if name == "" || strings.ContainsAny(name, " \t\r\n:") && !strings.HasPrefix(name, ":") {
			is.add(p, "invalid header name %q", name)
		}
		if lower := strings.ToLower(name); lower == "host" || strings.HasPrefix(lower, ":") {
			is.add(p, "header %q cannot be edited (Host: use rewrite.authority)", name)
		}
	}
	lowerMap := func(in map[string]string, field string) map[string]string {
		if len(in) == 0 {
			return nil
		}
		m := map[string]string{}
		for _, k := range model.SortedKeys(in) {
			check(strict.Key(strict.Field(path, field), k), k)
			m[strings.ToLower(k)] = in[k]
		}
		return m
	}
	out.Set = lowerMap(o.GetSet(), "set")
	out.Add = lowerMap(o.GetAdd(), "add")
	for i, k := range o.GetRemove() {
		check(strict.Index(strict.Field(path, "remove"), i), k)
		out.Remove = append(out.Remove, strings.ToLower(k))
	}
	return out
}

// retryConditions are the retryOn values Istio (and Envoy's router) accept.
var retryConditions = []string{
	"5xx", "gateway-error", "reset", "connect-failure", "envoy-ratelimited", "retriable-4xx",
	"refused-stream", "retriable-status-codes", "retriable-headers", "reset-before-request",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

// supportedRetryConditions are those the skein proxy implements.
var supportedRetryConditions = []string{
	"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream",
	"retriable-status-codes", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

// retries follows Istio's ConvertPolicy: start from the default policy, take attempts,
// and when retryOn is given take its conditions, numbers being status codes (which
// add retriable-status-codes).
func retries(rt *networking.HTTPRetry, path string, is *issues) *model.RetryPolicy {
	out := model.DefaultRetryPolicy()
	if rt.GetAttempts() < 0 {
		is.add(strict.Field(path, "attempts"), "attempts %d must not be negative", rt.GetAttempts())
	}
	out.Attempts = int(rt.GetAttempts())
	if t := rt.GetPerTryTimeout(); t != nil {
		d := t.AsDuration()
		if err := t.CheckValid(); err != nil || d < time.Millisecond {
			is.add(strict.Field(path, "perTryTimeout"), "perTryTimeout must be at least 1ms")
		}
		out.PerTryTimeout = d
	}
	if b := rt.GetBackoff(); b != nil {
		if err := b.CheckValid(); err != nil || b.AsDuration() < time.Millisecond {
			is.add(strict.Field(path, "backoff"), "backoff must be at least 1ms")
		}
		out.BackOff = b.AsDuration()
	}
	if v := rt.GetRetryIgnorePreviousHosts(); v != nil {
		b := v.GetValue()
		out.IgnorePreviousHosts = &b
	}
	if on := rt.GetRetryOn(); on != "" {
		out.RetryOn, out.RetriableStatusCodes = nil, nil
		for _, part := range strings.Split(on, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if n, err := strconv.Atoi(part); err == nil {
				if http.StatusText(n) == "" {
					is.add(strict.Field(path, "retryOn"), "%q is not an HTTP status code", part)
				}
				out.RetriableStatusCodes = append(out.RetriableStatusCodes, n)
				continue
			}
			switch {
			case !slices.Contains(retryConditions, part):
				is.add(strict.Field(path, "retryOn"), "unknown retry condition %q (known: %s, or an HTTP status code)", part, strings.Join(retryConditions, ", "))
			case !slices.Contains(supportedRetryConditions, part):
				is.add(strict.Field(path, "retryOn"), "retry condition %q is not supported yet by skein", part)
			}
			out.RetryOn = append(out.RetryOn, part)
		}
		if len(out.RetriableStatusCodes) > 0 && !slices.Contains(out.RetryOn, "retriable-status-codes") {
			out.RetryOn = append(out.RetryOn, "retriable-status-codes")
		}
	}
	return out
}

// GRPCCodes maps gRPC status names, as Istio's abort.grpcStatus writes them, to codes.
var GRPCCodes = map[string]int{
	"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
	"NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
	"FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
	"INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

func fault(f *networking.HTTPFaultInjection, path string, is *issues) *model.HTTPFault {
	out := &model.HTTPFault{}
	if d := f.GetDelay(); d != nil {
		dpath := strict.Field(path, "delay")
		fd := d.GetFixedDelay()
		if fd == nil {
			is.add(strict.Field(dpath, "fixedDelay"), "fixedDelay is required")
		} else if err := fd.CheckValid(); err != nil || fd.AsDuration() < time.Millisecond {
			is.add(strict.Field(dpath, "fixedDelay"), "fixedDelay must be at least 1ms")
		}
		out.Delay = &model.FaultDelay{Fixed: fd.AsDuration(), Percent: percentage(d.GetPercentage(), strict.Field(dpath, "percentage"), is)}
	}
	if a := f.GetAbort(); a != nil {
		apath := strict.Field(path, "abort")
		out.Abort = &model.FaultAbort{Percent: percentage(a.GetPercentage(), strict.Field(apath, "percentage"), is)}
		switch a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			out.Abort.HTTPStatus = int(a.GetHttpStatus())
			if out.Abort.HTTPStatus < 200 || out.Abort.HTTPStatus > 599 {
				is.add(strict.Field(apath, "httpStatus"), "httpStatus %d out of range [200, 599]", out.Abort.HTTPStatus)
			}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			out.Abort.GRPCStatus = strings.ToUpper(a.GetGrpcStatus())
			if _, ok := GRPCCodes[out.Abort.GRPCStatus]; !ok {
				is.add(strict.Field(apath, "grpcStatus"), "unknown gRPC status %q (e.g. UNAVAILABLE)", a.GetGrpcStatus())
			}
		default:
			is.add(apath, "one of httpStatus or grpcStatus is required")
		}
	}
	if out.Delay == nil && out.Abort == nil {
		is.add(path, "one of delay or abort is required")
	}
	return out
}

// percentage reads an Istio Percent; unset means 100, as Istio does.
func percentage(p *networking.Percent, path string, is *issues) float64 {
	if p == nil {
		return 100
	}
	v := p.GetValue()
	if v < 0 || v > 100 {
		is.add(strict.Field(path, "value"), "percentage %v out of range [0, 100]", v)
	}
	return v
}

func mirrors(r *networking.HTTPRoute, path, ns, suffix string, is *issues) []model.Mirror {
	var out []model.Mirror
	if m := r.GetMirror(); m != nil {
		if len(r.GetMirrors()) > 0 {
			is.add(strict.Field(path, "mirror"), "mirror and mirrors cannot both be set")
		}
		d := destination(m, 0, strict.Field(path, "mirror"), ns, suffix, is)
		out = append(out, model.Mirror{Destination: d, Percent: percentage(r.GetMirrorPercentage(), strict.Field(path, "mirrorPercentage"), is)})
	} else if r.GetMirrorPercentage() != nil {
		is.add(strict.Field(path, "mirrorPercentage"), "mirrorPercentage needs mirror")
	}
	for i, m := range r.GetMirrors() {
		mpath := strict.Index(strict.Field(path, "mirrors"), i)
		if m.GetDestination() == nil {
			is.add(strict.Field(mpath, "destination"), "destination is required")
			continue
		}
		d := destination(m.GetDestination(), 0, strict.Field(mpath, "destination"), ns, suffix, is)
		out = append(out, model.Mirror{Destination: d, Percent: percentage(m.GetPercentage(), strict.Field(mpath, "percentage"), is)})
	}
	return out
}

func cors(c *networking.CorsPolicy, path string, is *issues) *model.CORSPolicy {
	out := &model.CORSPolicy{
		AllowMethods:  c.GetAllowMethods(),
		AllowHeaders:  c.GetAllowHeaders(),
		ExposeHeaders: c.GetExposeHeaders(),
	}
	for i, o := range c.GetAllowOrigins() {
		out.AllowOrigins = append(out.AllowOrigins, stringMatch(o, strict.Index(strict.Field(path, "allowOrigins"), i), is))
	}
	if len(out.AllowOrigins) == 0 {
		is.add(strict.Field(path, "allowOrigins"), "at least one origin is required")
	}
	if t := c.GetMaxAge(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() < 0 || t.AsDuration()%time.Second != 0 {
			is.add(strict.Field(path, "maxAge"), "maxAge must be whole seconds")
		}
		out.MaxAge = t.AsDuration()
	}
	if b := c.GetAllowCredentials(); b != nil {
		v := b.GetValue()
		out.AllowCredentials = &v
	}
	for i, m := range c.GetAllowMethods() {
		if m == "" || strings.ContainsAny(m, " ,") {
			is.add(strict.Index(strict.Field(path, "allowMethods"), i), "invalid method %q", m)
		}
	}
	return out
}

// Annotations of a VirtualService that configure skein's retry budget (a Linkerd-style
// extension) for every HTTP route of the VirtualService whose retries are enabled.
const (
	AnnotationBudgetRatio        = "retry.skein.dev/budget-ratio"
	AnnotationBudgetMinPerSecond = "retry.skein.dev/budget-min-retries-per-second"
	AnnotationBudgetTTL          = "retry.skein.dev/budget-ttl"
)

// ApplyRetryBudget reads the retry budget annotations and sets the budget on every
// HTTP route of vs (routes without a retry policy get Istio's default policy with the
// budget). Defaults as Linkerd's: min 10 retries per second, TTL 10s; the ratio is
// required to enable the budget.
func ApplyRetryBudget(vs *model.VirtualService, annotations map[string]string) []strict.Issue {
	var is issues
	path := func(k string) string { return strict.Key("metadata.annotations", k) }
	ratioText, ok := annotations[AnnotationBudgetRatio]
	if !ok {
		for _, k := range []string{AnnotationBudgetMinPerSecond, AnnotationBudgetTTL} {
			if _, set := annotations[k]; set {
				is.add(path(k), "%s needs %s", k, AnnotationBudgetRatio)
			}
		}
		return is
	}
	bud := &model.RetryBudget{MinPerSecond: 10, TTL: 10 * time.Second}
	r, err := strconv.ParseFloat(ratioText, 64)
	if err != nil || r < 0 || r > 1000 {
		is.add(path(AnnotationBudgetRatio), "ratio %q: a number from 0 to 1000 (e.g. 0.2: retries may add 20%% to the requests)", ratioText)
	}
	bud.Ratio = r
	if v, ok := annotations[AnnotationBudgetMinPerSecond]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000000 {
			is.add(path(AnnotationBudgetMinPerSecond), "%q: a whole number of retries per second, 0 or more", v)
		}
		bud.MinPerSecond = n
	}
	if v, ok := annotations[AnnotationBudgetTTL]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > time.Minute {
			is.add(path(AnnotationBudgetTTL), "%q: a duration from 1s to 60s", v)
		}
		bud.TTL = d
	}
	for i := range vs.HTTP {
		if vs.HTTP[i].Retries == nil {
			vs.HTTP[i].Retries = model.DefaultRetryPolicy()
		}
		vs.HTTP[i].Retries.Budget = bud
	}
	return is
}
