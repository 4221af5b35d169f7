// Command cpscale measures the control plane at scale: a synthetic registry (1,000 or
// 10,000 services, 50,000 endpoints) served by skein's xDS server (internal/xds/server,
// the real translator and go-control-plane) to 1,000 ADS clients in one separate process
// over real gRPC on loopback, each ACKing. For each scope of the proxies' config (none,
// a namespace-wide Sidecar, a per-workload Sidecar declaring its dependencies, and
// inferred: a mesh-wide Sidecar declaring nothing that infers from traffic, each client
// reporting its dependencies to the scope service once its stream is open, as a proxy
// does for a host it is asked for) it reports: time for all clients to sync at start, time from one config change (an
// endpoint of a service every client uses turns unhealthy) until every client has ACKed
// it, bytes of config per proxy, and control-plane heap in use after GC.
//
// Each case runs in its own server process (so memory figures do not mix), which starts
// its own client process. make bench-cp runs it; see docs/BENCHMARKS.md.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"log"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"skein.dev/skein/internal/xds/server"
	"skein.dev/skein/internal/xds/translate"
)

// cpuProfile and memProfile are the -cpuprofile and -memprofile flags, passed on to
// the server process.
var cpuProfile, memProfile string

func main() {
	role := flag.String("role", "", "internal: server or clients")
	scJSON := flag.String("scenario", "", "internal: the scenario as JSON")
	addr := flag.String("addr", "", "internal: xDS address for the clients")
	quick := flag.Bool("quick", false, "only the 1,000-service cases")
	clients := flag.Int("clients", 1000, "ADS clients")
	endpoints := flag.Int("endpoints", 50000, "endpoints in the registry")
	deps := flag.Int("deps", 5, "services each client depends on (declared scope)")
	scopes := flag.String("scopes", "none,namespace,declared,inferred", "scopes to run")
	sizes := flag.String("services", "1000,10000", "registry sizes to run")
	timeout := flag.Duration("timeout", 10*time.Minute, "per-case limit")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write the control plane's CPU profile (sync and change) to this file")
	flag.StringVar(&memProfile, "memprofile", "", "write the control plane's heap profile after the initial sync to this file")
	flag.Parse()
	var sc scenario
	if *scJSON != "" {
		if err := json.Unmarshal([]byte(*scJSON), &sc); err != nil {
			log.Fatal(err)
		}
	}
	switch *role {
	case "clients":
		if err := runClients(*addr, sc); err != nil {
			log.Fatal(err)
		}
		return
	case "server":
		if err := runServer(sc, *timeout); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *quick {
		*sizes = "1000"
	}
	var results []caseResult
	for _, size := range strings.Split(*sizes, ",") {
		var n int
		fmt.Sscan(size, &n)
		for _, scope := range strings.Split(*scopes, ",") {
			sc := scenario{Services: n, Endpoints: *endpoints, Namespaces: 20, Clients: *clients, Deps: *deps, Scope: scope}
			log.Printf("case: %d services, %d endpoints, %d clients, scope %s", sc.Services, sc.Endpoints, sc.Clients, scope)
			r, err := runCase(sc, *timeout)
			if err != nil {
				log.Printf("case failed: %v", err)
				r = caseResult{Scenario: sc, Error: err.Error()}
			}
			results = append(results, r)
		}
	}
	fmt.Print(markdown(results))
}

// caseResult is what a server process reports.
type caseResult struct {
	Scenario       scenario `json:"scenario"`
	TranslateAllMs float64  `json:"translateAllMs"` // Index + ForProxy for every client, serially, one core
	InitialSyncMs  float64  `json:"initialSyncMs"`  // clients started → all ACKed
	ChangeMs       float64  `json:"changeMs"`       // Update → last client ACK (includes 100 ms debounce)
	BytesPerProxy  float64  `json:"bytesPerProxy"`  // initial config, as received
	ChangeBytes    float64  `json:"changeBytesPerProxy"`
	ClustersPer    float64  `json:"clustersPerProxy"`
	HeapMB         float64  `json:"heapMB"`      // after initial sync, after GC
	HeapAfterMB    float64  `json:"heapAfterMB"` // after the change, after GC
	RSSMB          float64  `json:"rssMB"`       // peak (VmHWM)
	Error          string   `json:"error,omitempty"`
}

func runCase(sc scenario, timeout time.Duration) (caseResult, error) {
	raw, _ := json.Marshal(sc)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-role", "server", "-scenario", string(raw), "-timeout", timeout.String(), "-cpuprofile", cpuProfile, "-memprofile", memProfile)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return caseResult{}, fmt.Errorf("server process: %w", err)
	}
	var r caseResult
	if err := json.Unmarshal(out, &r); err != nil {
		return caseResult{}, fmt.Errorf("server output %q: %w", out, err)
	}
	return r, nil
}

func runServer(sc scenario, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res := caseResult{Scenario: sc}
	mesh1 := sc.mesh(1, false)

	// The translation cost alone, for the report (not part of the timings below).
	start := time.Now()
	var clusters int
	idx := translate.NewIndex(mesh1)
	for j := 0; j < sc.Clients; j++ {
		r, err := idx.ForProxy(sc.proxy(j))
		if err != nil {
			return err
		}
		clusters += len(r.Clusters)
	}
	res.TranslateAllMs = ms(time.Since(start))
	res.ClustersPer = float64(clusters) / float64(sc.Clients)
	idx = nil
	runtime.GC()
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	srv := server.New(server.Options{Logger: slog.New(slog.DiscardHandler)})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, lis) }()
	srv.Update(mesh1)

	raw, _ := json.Marshal(sc)
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	cl := exec.CommandContext(cctx, os.Args[0], "-role", "clients", "-scenario", string(raw), "-addr", lis.Addr().String())
	cl.Stderr = os.Stderr
	stdout, err := cl.StdoutPipe()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := cl.Start(); err != nil {
		return err
	}
	defer func() { ccancel(); _ = cl.Wait() }()
	lines := make(chan genSummary)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var g genSummary
			if json.Unmarshal(sc.Bytes(), &g) == nil {
				lines <- g
			}
		}
		close(lines)
	}()
	wait := func(gen int64) (genSummary, error) {
		for {
			select {
			case <-ctx.Done():
				return genSummary{}, fmt.Errorf("waiting for generation %d: %w", gen, ctx.Err())
			case err := <-serveErr:
				return genSummary{}, fmt.Errorf("xds server: %v", err)
			case g, ok := <-lines:
				if !ok {
					return genSummary{}, errors.New("client process ended")
				}
				if g.Gen == gen {
					return g, nil
				}
			}
		}
	}
	// allInSync waits until the server's own ACK tracking has every client in sync
	// with generation gen (every subscribed type ACKed at its current version), and
	// returns when it saw that: the clients' view above cannot tell a type that is
	// still coming from one the generation did not change.
	allInSync := func(gen int64) (time.Time, error) {
		for {
			if srv.AppliedGeneration() >= gen {
				n := 0
				for _, st := range srv.Status() {
					if st.InSync {
						n++
					}
				}
				if n >= sc.Clients {
					return time.Now(), nil
				}
			}
			select {
			case <-ctx.Done():
				return time.Time{}, fmt.Errorf("waiting for the server to see generation %d in sync: %w", gen, ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	// syncedAt is the later of the last client's ACK and the server seeing all in sync.
	syncedAt := func(g genSummary, gen int64) (time.Time, error) {
		seen, err := allInSync(gen)
		if err != nil {
			return time.Time{}, err
		}
		last := time.Unix(0, g.LastNano)
		if seen.Sub(last) > 10*time.Millisecond { // more than the polling period: not done
			return seen, nil
		}
		return last, nil
	}
	g1, err := wait(1)
	if err != nil {
		return err
	}
	at1, err := syncedAt(g1, 1)
	if err != nil {
		return err
	}
	res.InitialSyncMs = ms(at1.Sub(t0))
	res.BytesPerProxy = float64(g1.BytesTotal) / float64(sc.Clients)
	res.HeapMB = heapMB()
	if memProfile != "" {
		f, err := os.Create(memProfile)
		if err != nil {
			return err
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			return err
		}
		f.Close()
	}

	mesh2 := sc.mesh(2, true)
	runtime.GC()
	t1 := time.Now()
	srv.Update(mesh2)
	g2, err := wait(2)
	if err != nil {
		return err
	}
	at2, err := syncedAt(g2, 2)
	if err != nil {
		return err
	}
	res.ChangeMs = ms(at2.Sub(t1))
	res.ChangeBytes = float64(g2.BytesTotal) / float64(sc.Clients)
	mesh1 = nil
	res.HeapAfterMB = heapMB()
	res.RSSMB = peakRSSMB()
	return json.NewEncoder(os.Stdout).Encode(res)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

func peakRSSMB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb float64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb / 1024
		}
	}
	return 0
}

func markdown(rs []caseResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| services | endpoints | clients | scope | clusters / proxy | config KB / proxy | initial sync s | change → all ACKed ms | change KB / proxy | translate all proxies ms (1 core) | CP heap MB | CP heap after change MB | CP peak RSS MB |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		s := r.Scenario
		if r.Error != "" {
			fmt.Fprintf(&b, "| %d | %d | %d | %s | failed: %s |||||||||\n", s.Services, s.Endpoints, s.Clients, s.Scope, firstLine(r.Error))
			continue
		}
		fmt.Fprintf(&b, "| %d | %d | %d | %s | %.0f | %.1f | %.2f | %.0f | %.1f | %.0f | %.0f | %.0f | %.0f |\n",
			s.Services, s.Endpoints, s.Clients, s.Scope, r.ClustersPer, r.BytesPerProxy/1024, r.InitialSyncMs/1000, r.ChangeMs,
			r.ChangeBytes/1024, r.TranslateAllMs, r.HeapMB, r.HeapAfterMB, r.RSSMB)
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
