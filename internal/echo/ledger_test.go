package echo

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestFailure(t *testing.T) {
	h := http.Header{}
	h.Set(HeaderFail, "2")
	h.Set(HeaderFailStatus, "502")
	h.Set(HeaderFailLatency, "10ms")
	for attempt, want := range map[int]int{1: 502, 2: 502, 3: 0} {
		got, delay, err := failure(h, attempt)
		if err != nil || got != want || want != 0 && delay != 10*time.Millisecond {
			t.Errorf("attempt %d: %d %v %v, want %d", attempt, got, delay, err, want)
		}
	}
	h.Set(HeaderFail, "x")
	if _, _, err := failure(h, 1); err == nil {
		t.Error("bad x-echo-fail accepted")
	}
}

func TestLedger(t *testing.T) {
	l := newLedger()
	if l.record("", "h", "/") != 0 {
		t.Error("requests without id are not counted")
	}
	l.record("a", "web:8080", "/x")
	if n := l.record("a", "web-shadow:8080", "/x"); n != 2 {
		t.Errorf("second sighting = %d", n)
	}
	s := l.lookup("a")
	if s.Count != 2 || s.Hosts[1] != "web-shadow:8080" || l.lookup("b").Count != 0 {
		t.Errorf("lookup: %+v", s)
	}
	for i := range maxLedger {
		l.record(string(rune('a'+i%26))+string(rune(i)), "h", "/")
	}
	if l.lookup("a").Count != 0 {
		t.Error("the oldest id must be forgotten")
	}
}

func TestFailGRPCIsTrailersOnly(t *testing.T) {
	l := newLedger()
	r := httptest.NewRequest(http.MethodPost, "/skein.echo.v1.Echo/Echo", nil)
	r.Header.Set("Content-Type", "application/grpc")
	r.Header.Set("X-Request-Id", "id")
	r.Header.Set(HeaderFail, "1")
	r.Header.Set(HeaderFailGRPCStatus, "8")
	w := httptest.NewRecorder()
	if _, failed := l.failGRPC(w, r); !failed || w.Code != 200 || w.Header().Get("Grpc-Status") != "8" || w.Body.Len() != 0 {
		t.Fatalf("first attempt: failed=%v %d %v", failed, w.Code, w.Header())
	}
	next, failed := l.failGRPC(httptest.NewRecorder(), r)
	if failed || next.Context().Value(attemptKey{}) != 2 {
		t.Errorf("second attempt must be served, counted once: failed=%v attempt=%v", failed, next.Context().Value(attemptKey{}))
	}
}
