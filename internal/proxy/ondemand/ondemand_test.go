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
	calls   atomic.Int32
	known   map[string]bool
	release chan struct{} // when set, calls wait for it
}

func (f *fakeCP) Invoke(_ context.Context, _ string, args, reply any, _ ...grpc.CallOption) error {
	f.calls.Add(1)
	if f.release != nil {
		<-f.release
	}
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
	cp := &fakeCP{known: map[string]bool{"catalog:8080": true}, release: make(chan struct{})}
	c := New(Options{Conn: cp, ProxyID: "p", Hold: 5 * time.Second})
	var applied atomic.Bool
	var wg, started sync.WaitGroup
	var ok atomic.Int32
	for range 8 {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			if c.Await(context.Background(), "catalog:8080", applied.Load) {
				ok.Add(1)
			}
		}()
	}
	// The control plane answers once every request is waiting on it; the config
	// arrives after.
	started.Wait()
	time.Sleep(100 * time.Millisecond)
	close(cp.release)
	time.Sleep(50 * time.Millisecond)
	applied.Store(true)
	c.ConfigApplied()
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

// fakeInactive answers that the proxy's scope is not inferred.
type fakeInactive struct{ fakeCP }

func (f *fakeInactive) Invoke(_ context.Context, _ string, _, reply any, _ ...grpc.CallOption) error {
	f.calls.Add(1)
	reply.(*structpb.Struct).Fields = map[string]*structpb.Value{"active": structpb.NewBoolValue(false)}
	return nil
}

func TestAwaitInactiveStopsAsking(t *testing.T) {
	cp := &fakeInactive{}
	c := New(Options{Conn: cp, ProxyID: "p", Hold: time.Second})
	never := func() bool { return false }
	for _, h := range []string{"a:1", "b:1", "c:1"} {
		if c.Await(context.Background(), h, never) {
			t.Fatal("routed without inference")
		}
	}
	if n := cp.calls.Load(); n != 1 {
		t.Fatalf("%d calls while the control plane says inference is off, want 1", n)
	}
}
