package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"skein.dev/skein/internal/proxy/streaminfo"
)

// memFile is an io.WriteCloser that records each Write.
type memFile struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	closed bool
}

func (f *memFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	return f.buf.Write(p)
}

func (f *memFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *memFile) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Split(strings.TrimSuffix(f.buf.String(), "\n"), "\n")
}

func info(path string) *streaminfo.Info {
	return &streaminfo.Info{
		Start: time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC), Duration: 1500 * time.Microsecond,
		Listener: "outbound|8080||server.default.svc.cluster.local", Direction: streaminfo.Outbound,
		Protocol: streaminfo.ProtocolHTTP, HTTPVersion: "HTTP/1.1", Method: "POST", Path: path,
		ResponseCode: 200, GRPCStatus: -1, RequestID: "8f1e2a3b-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
	}
}

// TestLinesArriveBatchedAndInOrder: lines logged together are written together (one
// write for the burst), within the flush interval, in order, each the Record shape.
func TestLinesArriveBatchedAndInOrder(t *testing.T) {
	f := &memFile{}
	l := Start(context.Background(), f, Options{Proxy: "client-0.default"})
	for i := range 50 {
		l.Log(info("/p" + string(rune('a'+i%26))))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(f.lines()) < 50 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lines := f.lines()
	if len(lines) != 50 {
		t.Fatalf("%d lines, want 50", len(lines))
	}
	for i, line := range lines {
		var r streaminfo.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, line)
		}
		if want := "/p" + string(rune('a'+i%26)); r.Path != want || r.Proxy != "client-0.default" || r.ResponseCode != 200 || r.Duration != 1.5 {
			t.Errorf("line %d: %+v, want path %s", i, r, want)
		}
	}
	f.mu.Lock()
	writes := f.writes
	f.mu.Unlock()
	if writes > 2 { // one burst: one write (two if the writer woke in the middle of it)
		t.Errorf("%d writes for one burst of 50 lines, want them batched", writes)
	}
}

// TestStopWritesPendingAndCloses: lines logged just before the context ends are
// written, then the file is closed; lines after that are dropped and counted.
func TestStopWritesPendingAndCloses(t *testing.T) {
	f := &memFile{}
	ctx, cancel := context.WithCancel(context.Background())
	l := Start(ctx, f, Options{Proxy: "p"})
	l.Log(info("/a"))
	l.Log(info("/b"))
	cancel()
	l.Wait()
	if got := f.lines(); len(got) != 2 || !f.closed {
		t.Fatalf("lines %q closed %v, want 2 lines and closed", got, f.closed)
	}
	l.Log(info("/late"))
	if l.Dropped() != 1 {
		t.Errorf("dropped = %d, want 1 (logged after stop)", l.Dropped())
	}
}

// TestFullBatchDrops: when the writer falls behind by MaxPending bytes, lines are
// dropped and counted, never blocking the request.
func TestFullBatchDrops(t *testing.T) {
	f := &memFile{}
	ctx, cancel := context.WithCancel(context.Background())
	l := Start(ctx, f, Options{Proxy: "p", MaxPending: 1000})
	for range 10 { // ~300 bytes each: the fourth and later do not fit
		l.Log(info("/x"))
	}
	cancel()
	l.Wait()
	written := len(f.lines())
	if written+int(l.Dropped()) != 10 || l.Dropped() == 0 || written == 0 {
		t.Errorf("%d written, %d dropped; want some of each, 10 in all", written, l.Dropped())
	}
}

// discard is a WriteCloser that throws lines away.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Close() error                { return nil }

// BenchmarkLog is the request goroutine's share of an access log line (formatting it
// into the batch). The batch limit is raised so that lines are formatted, not dropped.
func BenchmarkLog(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := Start(ctx, discard{}, Options{Proxy: "client-0.default", MaxPending: 256 << 20})
	in := info("/echo")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Log(in)
		}
	})
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
}
