package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"skein.dev/skein/internal/model"
)

// Backend is what a running mesh exposes through the API.
type Backend interface {
	Status() Status
	ExecEnv(name, namespace string) (ExecEnv, error)
	// Shutdown asks the mesh to stop; it returns at once.
	Shutdown()
}

// ConfigBackend is a Backend that also shows its current configuration (the model);
// GET /api/config answers 404 for backends that do not.
type ConfigBackend interface {
	Config() *model.Mesh
}

// ErrNotFound is returned by Backend.ExecEnv for an unknown workload.
var ErrNotFound = errors.New("not found")

// Handler serves the API for a backend.
func Handler(b Backend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status())
	})
	mux.HandleFunc("GET /api/exec", func(w http.ResponseWriter, r *http.Request) {
		env, err := b.ExecEnv(r.URL.Query().Get("workload"), r.URL.Query().Get("namespace"))
		switch {
		case errors.Is(err, ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			writeJSON(w, http.StatusOK, env)
		}
	})
	mux.HandleFunc("GET /api/config", func(w http.ResponseWriter, r *http.Request) {
		cb, ok := b.(ConfigBackend)
		if !ok {
			http.Error(w, "this backend does not show its configuration", http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, cb.Config())
	})
	mux.HandleFunc("POST /api/down", func(w http.ResponseWriter, r *http.Request) {
		b.Shutdown()
		w.WriteHeader(http.StatusAccepted)
	})
	registerCA(mux, b)
	registerCredentials(mux, b)
	registerObjects(mux, b)
	return mux
}

// Serve serves the API on lis until ctx is done.
func Serve(ctx context.Context, lis net.Listener, b Backend, logger *slog.Logger) error {
	srv := &http.Server{Handler: Handler(b), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("api server", "err", err)
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
