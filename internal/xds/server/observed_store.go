package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"skein.dev/skein/internal/model"
)

// The inferred scope survives a control-plane restart in Options.ObservedFile (skein up
// keeps it in its state dir), so proxies do not have to ask for every host again.

type observedFile struct {
	// Workloads: "namespace/name" → host → last use and TTL.
	Workloads map[string]map[string]observedEntry `json:"workloads"`
}

type observedEntry struct {
	LastUsed time.Time     `json:"lastUsed"`
	TTL      time.Duration `json:"ttl"`
}

// loadObserved reads the file; a missing file is an empty scope.
func loadObserved(path string) (map[model.NamespacedName]map[string]observedHost, error) {
	out := map[model.NamespacedName]map[string]observedHost{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	var f observedFile
	if err := json.Unmarshal(b, &f); err != nil {
		return out, fmt.Errorf("%s: %w", path, err)
	}
	for key, hosts := range f.Workloads {
		ns, name, ok := strings.Cut(key, "/")
		if !ok || len(hosts) == 0 {
			continue
		}
		set := map[string]observedHost{}
		for h, e := range hosts {
			if len(set) < maxObservedHosts && e.TTL > 0 {
				set[h] = observedHost{last: e.LastUsed, ttl: e.TTL}
			}
		}
		out[model.NamespacedName{Namespace: ns, Name: name}] = set
	}
	return out, nil
}

// saveObservedLocked writes the scope atomically (temp file and rename). Callers hold
// mu; errors are logged: the scope is then only in memory.
func (s *Server) saveObservedLocked() {
	if s.observedFile == "" {
		return
	}
	f := observedFile{Workloads: map[string]map[string]observedEntry{}}
	for wl, set := range s.observed {
		hosts := make(map[string]observedEntry, len(set))
		for h, o := range set {
			hosts[h] = observedEntry{LastUsed: o.last, TTL: o.ttl}
		}
		f.Workloads[wl.Namespace+"/"+wl.Name] = hosts
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err == nil {
		tmp := s.observedFile + ".tmp"
		if err = os.MkdirAll(filepath.Dir(s.observedFile), 0o700); err == nil {
			if err = os.WriteFile(tmp, b, 0o600); err == nil {
				err = os.Rename(tmp, s.observedFile)
			}
		}
	}
	if err != nil {
		s.log.Warn("saving the inferred scope", "file", s.observedFile, "err", err)
	}
	s.observedDirty = false
}
