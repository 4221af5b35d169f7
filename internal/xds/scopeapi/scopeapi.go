// Package scopeapi is the wire contract of the scope service a proxy uses to tell the
// control plane which service hosts its workload uses (docs/USAGE.md, scope inferred
// from traffic). Described by hand (no protoc here), as the CA's CSR service is:
// messages are google.protobuf.Struct, so the wire format is plain protobuf:
//
//	rpc Observe(Struct{hosts: [string...]}) returns (Struct{active: bool, hosts: [string...]})
//
// The proxy's node id travels in the "x-skein-proxy-id" metadata. It shares the xDS
// gRPC server and its transport (plaintext on loopback for now).
package scopeapi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	ServiceName        = "skein.scope.v1.Scope"
	ObserveMethod      = "/" + ServiceName + "/Observe"
	ProxyIDMetadataKey = "x-skein-proxy-id"

	fieldHosts  = "hosts"
	fieldActive = "active"
)

// MaxHosts bounds one report.
const MaxHosts = 256

// Observer is what the control plane implements.
type Observer interface {
	// Observe records hosts the proxy uses or needs; active reports whether its scope
	// is inferred from traffic at all; hosts are the ones now in its scope (FQDNs).
	Observe(ctx context.Context, proxyID string, hosts []string) (active bool, inScope []string, err error)
}

// Register adds the service to a gRPC server.
func Register(r grpc.ServiceRegistrar, o Observer) {
	r.RegisterService(&grpc.ServiceDesc{
		ServiceName: ServiceName,
		HandlerType: (*Observer)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Observe",
			Handler:    observeHandler,
		}},
		Metadata: "skein/scope/v1/scope.proto (hand-written, Struct messages)",
	}, o)
}

func observeHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(structpb.Struct)
	if err := dec(in); err != nil {
		return nil, err
	}
	call := func(ctx context.Context, req any) (any, error) {
		hosts, err := decodeHosts(req.(*structpb.Struct))
		if err != nil {
			return nil, err
		}
		md, _ := metadata.FromIncomingContext(ctx)
		ids := md.Get(ProxyIDMetadataKey)
		if len(ids) != 1 || ids[0] == "" {
			return nil, errors.New("scope: " + ProxyIDMetadataKey + " metadata is required")
		}
		active, inScope, err := srv.(Observer).Observe(ctx, ids[0], hosts)
		if err != nil {
			return nil, err
		}
		return &structpb.Struct{Fields: map[string]*structpb.Value{
			fieldActive: structpb.NewBoolValue(active),
			fieldHosts:  stringList(inScope),
		}}, nil
	}
	if interceptor == nil {
		return call(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: ObserveMethod}, call)
}

// Observe calls the service: the proxy side.
func Observe(ctx context.Context, conn grpc.ClientConnInterface, proxyID string, hosts []string) (active bool, inScope []string, err error) {
	ctx = metadata.AppendToOutgoingContext(ctx, ProxyIDMetadataKey, proxyID)
	in := &structpb.Struct{Fields: map[string]*structpb.Value{fieldHosts: stringList(hosts)}}
	out := new(structpb.Struct)
	if err := conn.Invoke(ctx, ObserveMethod, in, out); err != nil {
		return false, nil, err
	}
	inScope, err = decodeHosts(out)
	return out.GetFields()[fieldActive].GetBoolValue(), inScope, err
}

func decodeHosts(s *structpb.Struct) ([]string, error) {
	list := s.GetFields()[fieldHosts].GetListValue().GetValues()
	if len(list) > MaxHosts {
		return nil, fmt.Errorf("scope: at most %d hosts per report, got %d", MaxHosts, len(list))
	}
	out := make([]string, 0, len(list))
	for _, v := range list {
		h := v.GetStringValue()
		if h == "" || len(h) > 253+6 {
			return nil, fmt.Errorf("scope: host %q is not a host name", h)
		}
		out = append(out, h)
	}
	return out, nil
}

func stringList(values []string) *structpb.Value {
	l := &structpb.ListValue{Values: make([]*structpb.Value, 0, len(values))}
	for _, v := range values {
		l.Values = append(l.Values, structpb.NewStringValue(v))
	}
	return structpb.NewListValue(l)
}
