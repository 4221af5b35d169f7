package jwtauthn

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestCacheRefreshesKeys: a key set is fetched on first use, served from the cache,
// and refreshed in the background once its cache duration passes; a failed refresh
// keeps the previous keys.
func TestCacheRefreshesKeys(t *testing.T) {
	var current atomic.Value
	current.Store(`{"keys":[{"kty":"EC","crv":"P-256","kid":"one","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
	var fail atomic.Bool
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(current.Load().(string)))
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewCache(ctx, CacheOptions{})
	keys, err := c.Keys(ctx, srv.URL, time.Second, 300*time.Millisecond)
	if err != nil || len(keys.Key("one")) != 1 {
		t.Fatalf("first fetch: %v %v", keys, err)
	}
	current.Store(`{"keys":[{"kty":"EC","crv":"P-256","kid":"two","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		keys, err = c.Keys(ctx, srv.URL, time.Second, 300*time.Millisecond)
		if err == nil && len(keys.Key("two")) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys not refreshed (fetches %d)", fetches.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	fail.Store(true)
	before := fetches.Load()
	for fetches.Load() < before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if keys, err = c.Keys(ctx, srv.URL, time.Second, 300*time.Millisecond); err != nil || len(keys.Key("two")) != 1 {
		t.Errorf("after failed refreshes: %v %v, want the previous keys", keys, err)
	}
}

func TestCacheFetchFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := NewCache(ctx, CacheOptions{}).Keys(ctx, srv.URL, time.Second, time.Minute)
	if err == nil {
		t.Fatal("want an error")
	}
}
