package echo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// The echo gRPC service is described by hand (no protoc): both methods take and return
// a google.protobuf.Struct, whose fields are those of Response.
const (
	GRPCService      = "skein.echo.v1.Echo"
	GRPCMethodEcho   = "/" + GRPCService + "/Echo"
	GRPCMethodStream = "/" + GRPCService + "/Stream"
	// maxStreamCount bounds the "count" of a Stream request.
	maxStreamCount = 10000
)

// Request fields the gRPC service understands; every field is echoed under "request".
const (
	FieldCount      = "count"      // Stream: number of answers (default 1)
	FieldLatency    = "latency"    // a Go duration string, e.g. "20ms"
	FieldGRPCStatus = "grpcStatus" // a gRPC code number to fail with
)

// echoService is what the hand-written ServiceDesc dispatches to.
type echoService interface {
	echo(ctx context.Context, req *structpb.Struct) (*structpb.Struct, error)
	stream(req *structpb.Struct, ss grpc.ServerStream) error
}

func echoServiceDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: GRPCService,
		HandlerType: (*echoService)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				req := new(structpb.Struct)
				if err := dec(req); err != nil {
					return nil, err
				}
				call := func(ctx context.Context, req any) (any, error) {
					return srv.(echoService).echo(ctx, req.(*structpb.Struct))
				}
				if icpt == nil {
					return call(ctx, req)
				}
				return icpt(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: GRPCMethodEcho}, call)
			},
		}},
		Streams: []grpc.StreamDesc{{
			StreamName:    "Stream",
			ServerStreams: true,
			Handler: func(srv any, ss grpc.ServerStream) error {
				req := new(structpb.Struct)
				if err := ss.RecvMsg(req); err != nil {
					return err
				}
				return srv.(echoService).stream(req, ss)
			},
		}},
		Metadata: "skein/echo/v1/echo.proto",
	}
}

// grpcEcho implements echoService.
type grpcEcho struct {
	opts   Options
	caller *caller
	ledger *ledger
}

var _ echoService = (*grpcEcho)(nil)

func (g *grpcEcho) echo(ctx context.Context, req *structpb.Struct) (*structpb.Struct, error) {
	resp, err := g.prepare(ctx, req)
	if err != nil {
		return nil, err
	}
	return toStruct(resp)
}

func (g *grpcEcho) stream(req *structpb.Struct, ss grpc.ServerStream) error {
	resp, err := g.prepare(ss.Context(), req)
	if err != nil {
		return err
	}
	count := 1
	if v, ok := req.GetFields()[FieldCount]; ok {
		count = int(v.GetNumberValue())
	}
	if count < 0 || count > maxStreamCount {
		return status.Errorf(codes.InvalidArgument, "count must be in 0..%d", maxStreamCount)
	}
	for i := range count {
		resp.Index = i
		msg, err := toStruct(resp)
		if err != nil {
			return err
		}
		if err := ss.SendMsg(msg); err != nil {
			return err
		}
	}
	return nil
}

// prepare waits the requested latency, makes the upstream calls and builds the answer,
// or returns the requested gRPC status.
func (g *grpcEcho) prepare(ctx context.Context, req *structpb.Struct) (Response, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(name string) string {
		if v := md.Get(name); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	fields := req.GetFields()
	latency := g.opts.Latency
	// The request field wins over the metadata, as the query wins over headers in HTTP.
	for _, s := range []string{get(HeaderLatency), fields[FieldLatency].GetStringValue()} {
		if s == "" {
			continue
		}
		d, err := parseLatency(s)
		if err != nil {
			return Response{}, status.Error(codes.InvalidArgument, err.Error())
		}
		latency = d
	}
	if !sleep(ctx, latency) {
		return Response{}, status.FromContextError(ctx.Err()).Err()
	}
	if v, ok := fields[FieldGRPCStatus]; ok {
		if c := codes.Code(v.GetNumberValue()); c != codes.OK {
			return Response{}, status.Errorf(c, "echo: requested status %s", c)
		}
	}
	method, _ := grpc.Method(ctx)
	attempt, counted := ctx.Value(attemptKey{}).(int)
	if !counted {
		attempt = g.ledger.record(get("x-request-id"), get(":authority"), method)
	}

	resp := Response{
		Workload:  g.opts.Identity.Workload,
		Namespace: g.opts.Identity.Namespace,
		Replica:   g.opts.Identity.Replica,
		Method:    "POST",
		Path:      method,
		Host:      get(":authority"),
		Proto:     "gRPC",
		Headers:   make(map[string]string, len(md)),
		Env:       g.opts.Env,
		Request:   req.AsMap(),
		Attempt:   attempt,
	}
	for k, v := range md {
		if len(v) > 0 && !strings.HasPrefix(k, ":") {
			resp.Headers[k] = v[0]
		}
	}
	resp.Upstreams = g.caller.call(ctx, get)
	return resp, nil
}

func parseLatency(s string) (time.Duration, error) {
	b, err := resolveBehaviour(behaviour{}, nil, url.Values{"latency": {s}})
	return b.latency, err
}

// toStruct converts an answer to a Struct through its JSON form, so gRPC and HTTP
// answers have exactly the same fields.
func toStruct(r Response) (*structpb.Struct, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return s, nil
}

// CallGRPC calls skein.echo.v1.Echo/Echo with req and returns the answer's fields.
func CallGRPC(ctx context.Context, conn grpc.ClientConnInterface, req map[string]any, opts ...grpc.CallOption) (map[string]any, error) {
	in, err := structpb.NewStruct(req)
	if err != nil {
		return nil, fmt.Errorf("echo request: %w", err)
	}
	out := new(structpb.Struct)
	if err := conn.Invoke(ctx, GRPCMethodEcho, in, out, opts...); err != nil {
		return nil, err
	}
	return out.AsMap(), nil
}

// StreamGRPC calls skein.echo.v1.Echo/Stream with req (set "count" for the number of
// answers) and returns every answer's fields.
func StreamGRPC(ctx context.Context, conn grpc.ClientConnInterface, req map[string]any, opts ...grpc.CallOption) ([]map[string]any, error) {
	in, err := structpb.NewStruct(req)
	if err != nil {
		return nil, fmt.Errorf("echo request: %w", err)
	}
	desc := &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true}
	cs, err := conn.NewStream(ctx, desc, GRPCMethodStream, opts...)
	if err != nil {
		return nil, err
	}
	if err := cs.SendMsg(in); err != nil {
		return nil, err
	}
	if err := cs.CloseSend(); err != nil {
		return nil, err
	}
	var all []map[string]any
	for {
		out := new(structpb.Struct)
		err := cs.RecvMsg(out)
		if errors.Is(err, io.EOF) {
			return all, nil
		}
		if err != nil {
			return all, err
		}
		all = append(all, out.AsMap())
	}
}
