// Package tracing gives the proxy a span per hop, as Envoy's tracers do: a server span
// for a request arriving on an inbound listener, a client span for a request leaving
// through an outbound one. The parent comes from the request's W3C traceparent or
// Zipkin B3 headers (single or multi); the new span is injected back as both
// traceparent and B3 multi headers, so an app that propagates either keeps the trace.
// Sampling follows the parent's decision; a request without a parent starts a trace
// with the configured probability. Spans are exported with the OpenTelemetry SDK over
// OTLP/gRPC, OTLP/HTTP or Zipkin.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/zipkin"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/streaminfo"
)

// Exporter kinds.
const (
	ExporterOTLPGRPC = "otlp-grpc"
	ExporterOTLPHTTP = "otlp-http"
	ExporterZipkin   = "zipkin"
)

// Options configure a Tracer.
type Options struct {
	// Exporter is otlp-grpc, otlp-http or zipkin.
	Exporter string
	// Endpoint is host:port for otlp-grpc and otlp-http (plaintext), or the collector
	// URL for zipkin (http://host:9411/api/v2/spans).
	Endpoint string
	// SamplingPercent is the share of new traces sampled, 0..100 (Istio's
	// randomSamplingPercentage; Istio's default is 1).
	SamplingPercent float64
	Node            *model.Proxy
	Logger          *slog.Logger
	// BatchTimeout bounds how long a span waits before export; 0 means 1 s.
	BatchTimeout time.Duration
}

// Validate checks the options without side effects.
func (o Options) Validate() error {
	switch o.Exporter {
	case ExporterOTLPGRPC, ExporterOTLPHTTP, ExporterZipkin:
	default:
		return fmt.Errorf("tracing exporter %q: want otlp-grpc, otlp-http or zipkin", o.Exporter)
	}
	if o.Endpoint == "" {
		return errors.New("tracing endpoint is required")
	}
	if o.SamplingPercent < 0 || o.SamplingPercent > 100 {
		return fmt.Errorf("tracing sampling %v: want 0..100", o.SamplingPercent)
	}
	return nil
}

// Tracer makes the proxy's spans. A nil *Tracer traces nothing.
type Tracer struct {
	provider   *sdktrace.TracerProvider
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	nodeID     string
	component  string
}

// New starts a Tracer and its exporter.
func New(ctx context.Context, opts Options) (*Tracer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	var err error
	switch opts.Exporter {
	case ExporterOTLPGRPC:
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(opts.Endpoint), otlptracegrpc.WithInsecure())
	case ExporterOTLPHTTP:
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(opts.Endpoint), otlptracehttp.WithInsecure())
	case ExporterZipkin:
		exp, err = zipkin.New(opts.Endpoint)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing exporter %s: %w", opts.Exporter, err)
	}
	batch := opts.BatchTimeout
	if batch <= 0 {
		batch = time.Second
	}
	serviceName, nodeID, ns := "skein-proxy", "", ""
	if opts.Node != nil {
		// Istio names a sidecar's spans' service after the workload: <app>.<namespace>.
		app := opts.Node.Labels["app"]
		if app == "" {
			app = opts.Node.Workload.Name
		}
		serviceName = app + "." + opts.Node.Workload.Namespace
		nodeID, ns = opts.Node.ID, opts.Node.Workload.Namespace
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", serviceName),
		attribute.String("service.namespace", ns),
		attribute.String("service.instance.id", nodeID),
	)
	ratio := opts.SamplingPercent / 100
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(batch)),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	return &Tracer{
		provider: provider,
		tracer:   provider.Tracer("skein.dev/skein/proxy"),
		// The later extractor wins: traceparent is preferred over B3 when both came.
		propagator: propagation.NewCompositeTextMapPropagator(
			b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader)),
			propagation.TraceContext{},
		),
		nodeID:    nodeID,
		component: "proxy",
	}, nil
}

// Shutdown flushes the spans still queued and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// traceHeaders are removed before the new span is injected, so no stale parent (a B3
// single header, say) survives next to the new one.
var traceHeaders = []string{"Traceparent", "Tracestate", "B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags"}

// Start begins the hop's span from the request's headers and replaces those headers
// with the new span's context. info.TraceID/SpanID/Sampled are set.
func (t *Tracer) Start(ctx context.Context, r *http.Request, info *streaminfo.Info) (context.Context, trace.Span) {
	carrier := propagation.HeaderCarrier(r.Header)
	ctx = t.propagator.Extract(ctx, carrier)
	kind := trace.SpanKindClient
	if info.Direction == streaminfo.Inbound {
		kind = trace.SpanKindServer
	}
	ctx, span := t.tracer.Start(ctx, operationName(r.Host, r.URL.Path), trace.WithSpanKind(kind), trace.WithTimestamp(info.Start))
	for _, h := range traceHeaders {
		delete(r.Header, h)
	}
	t.propagator.Inject(ctx, carrier)
	sc := span.SpanContext()
	info.TraceID, info.SpanID, info.Sampled = sc.TraceID().String(), sc.SpanID().String(), sc.IsSampled()
	return ctx, span
}

// End finishes the span with the request's outcome, using Envoy's tag names.
func (t *Tracer) End(span trace.Span, info *streaminfo.Info) {
	if !span.IsRecording() {
		span.End()
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String("component", t.component),
		attribute.String("node_id", t.nodeID),
		attribute.String("guid:x-request-id", info.RequestID),
		attribute.String("http.method", info.Method),
		attribute.String("http.url", info.Scheme+"://"+info.Authority+info.Path),
		attribute.String("http.protocol", info.HTTPVersion),
		attribute.String("user_agent", info.UserAgent),
		attribute.String("downstream_cluster", "-"),
		attribute.String("peer.address", info.DownstreamAddress),
		attribute.Int("http.status_code", info.ResponseCode),
		attribute.String("response_flags", info.Flags.String()),
		attribute.String("upstream_cluster", info.Cluster),
		attribute.String("upstream_cluster.name", info.Cluster),
		attribute.String("upstream_address", info.UpstreamHost),
		attribute.Int64("request_size", info.BytesReceived),
		attribute.Int64("response_size", info.BytesSent),
		// OpenTelemetry semantic conventions, for backends that read those.
		attribute.String("http.request.method", info.Method),
		attribute.Int("http.response.status_code", info.ResponseCode),
		attribute.String("url.path", info.Path),
		attribute.String("server.address", info.Authority),
	}
	if info.Route != "" {
		attrs = append(attrs, attribute.String("route_name", info.Route))
	}
	if info.Service != nil {
		attrs = append(attrs, attribute.String("istio.destination_service", info.Service.Host))
	}
	if info.Protocol == streaminfo.ProtocolGRPC && info.GRPCStatus >= 0 {
		attrs = append(attrs, attribute.String("grpc.status_code", strconv.Itoa(info.GRPCStatus)))
	}
	span.SetAttributes(attrs...)
	// Envoy marks a span as an error for 5xx answers and for failures with no answer.
	if info.ResponseCode >= 500 || info.ResponseCode == 0 || info.Flags != 0 {
		span.SetAttributes(attribute.Bool("error", true))
		span.SetStatus(codes.Error, info.Flags.String())
	}
	span.End(trace.WithTimestamp(info.Start.Add(info.Duration)))
}

// operationName is Istio's span name: "<host>:<port>/*" (Envoy's decorator default
// for Istio routes), here from the request's authority.
func operationName(host, path string) string {
	if host == "" {
		return path
	}
	if !strings.Contains(host, ":") {
		host += ":80"
	}
	return host + "/*"
}
