package ondemand

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// fakeCP answers Observe: hosts in `known` are in scope.
type fakeCP struct {
	calls atomic.Int32
	known map[string]bool
}

func (f *fakeCP) Invoke(_ context.Context, _ string, args, reply any, _ ...grpc.CallOption) error {
	f.calls.Add(1)
	time.Sleep(20 * time.Millisecond) // let concurrent requests pile up
	var in []*structpb.Value
	for _, v := range args.(*structpb.Struct).GetFields()["hosts"].GetListValue().GetValues() {
		if f.known[v.GetStringValue()] {
			in = append(in, v)
		}
	}
	out := reply.(*structpb.Struct)
	out.Fields = map[string]*structpb.Value{"active": structpb.NewBoolValue(true), "hosts": structpb.NewListValue(&structpb.ListValue{Values: in})}
	return nil
}

func (f *fakeCP) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	panic("not used")
}

func TestAwaitSharesOneCallAndWaitsForConfig(t *testing.T) {
	cp := &fakeCP{known: map[string]bool{"catalog:8080": true}}
	c := New(Options{Conn: cp, ProxyID: "p", Hold: 2 * time.Second})
	var applied atomic.Bool
	go func() {
		time.Sleep(100 * time.Millisecond)
		applied.Store(true)
		c.ConfigApplied()
	}()
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Await(context.Background(), "catalog:8080", applied.Load) {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 8 || cp.calls.Load() != 1 {
		t.Fatalf("%d of 8 requests routed with %d calls to the control plane, want 8 with 1", ok.Load(), cp.calls.Load())
	}
}

func TestAwaitDeniedHostIsNotAskedAgain(t *testing.T) {
	cp := &fakeCP{}
	c := New(Options{Conn: cp, ProxyID: "p", Hold: time.Second})
	never := func() bool { return false }
	if c.Await(context.Background(), "nowhere:1", never) || c.Await(context.Background(), "nowhere:1", never) {
		t.Fatal("a host the control plane does not know was routed")
	}
	if n := cp.calls.Load(); n != 1 {
		t.Fatalf("%d calls for a denied host, want 1", n)
	}
}
