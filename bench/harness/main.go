// Command harness measures what a pair of proxies adds to a request, side by side in one
// run on one machine: fortio drives load (fixed 1,000 and 4,000 RPS and as fast as it
// can, 16 connections, 1 KB payload, HTTP/1.1 and gRPC) against the same fortio server
// through four topologies:
//
//	direct   fortio → server (the floor)
//	skein    fortio → client sidecar → server sidecar → server   (skein up; mTLS when the
//	         mesh config gives it, else plaintext, and the report says which)
//	nginx    fortio → nginx → (mutual TLS) → nginx → server
//	haproxy  fortio → HAProxy → (mutual TLS) → HAProxy → server
//
// It prints a Markdown report (latency, added latency over direct, proxy CPU per 1,000
// requests, proxy memory idle and under load, throughput per proxy core) and writes it,
// the raw results and a PNG of the latency distributions into -out. See
// docs/BENCHMARKS.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

type options struct {
	skein, fortio string
	quick         bool
	dur, warmup   time.Duration
	rates         []int // 0: max
	protos        []string
	topos         []string
	skeinMTLS     string
	workers       int
	out           string
	profile       time.Duration
}

func main() {
	var o options
	var rates, protos, topos string
	flag.StringVar(&o.skein, "skein", "bin/skein", "skein binary")
	flag.StringVar(&o.fortio, "fortio", "fortio", "fortio binary (v1.68.2)")
	flag.BoolVar(&o.quick, "quick", false, "quick mode: 1,000 RPS and max, 10 s runs (a few minutes in all)")
	flag.DurationVar(&o.dur, "duration", 0, "duration of each measured run (default 10s quick, 30s full)")
	flag.DurationVar(&o.warmup, "warmup", 0, "unmeasured load before each run (default 1s quick, 3s full)")
	flag.StringVar(&rates, "rates", "", "comma-separated rates, max for unlimited (default 1000,max quick; 1000,4000,max full)")
	flag.StringVar(&protos, "protocols", "http1,grpc", "http1 and/or grpc")
	flag.StringVar(&topos, "topologies", "direct,skein,nginx,haproxy", "which topologies to run (direct is always run: it is the floor)")
	flag.StringVar(&o.skeinMTLS, "skein-mtls", "auto", "auto: run the mesh as configured and report whether sidecars use mTLS; strict: add a mesh-wide PeerAuthentication STRICT and fail if the sidecars do not use mTLS")
	flag.IntVar(&o.workers, "workers", runtime.NumCPU(), "nginx worker_processes and HAProxy nbthread (skein uses GOMAXPROCS = all cores)")
	flag.StringVar(&o.out, "out", "bench/results", "directory for report.md, results.json and latency.png")
	replot := flag.String("replot", "", "render report.md and latency.png into -out again from a results.json (no load is run)")
	flag.DurationVar(&o.profile, "profile", 0, "if set, also take a CPU profile of this length and an alloc profile of both skein sidecars at 1,000 RPS HTTP/1.1 into -out")
	flag.Parse()
	if *replot != "" {
		if err := replotFile(*replot, o.out); err != nil {
			log.Fatal(err)
		}
		return
	}
	if o.dur == 0 {
		o.dur = 30 * time.Second
		if o.quick {
			o.dur = 10 * time.Second
		}
	}
	if o.warmup == 0 {
		o.warmup = 3 * time.Second
		if o.quick {
			o.warmup = time.Second
		}
	}
	if rates == "" {
		rates = "1000,4000,max"
		if o.quick {
			rates = "1000,max"
		}
	}
	for _, r := range strings.Split(rates, ",") {
		if r == "max" {
			o.rates = append(o.rates, 0)
			continue
		}
		n, err := strconv.Atoi(r)
		if err != nil || n <= 0 {
			log.Fatalf("-rates: bad rate %q", r)
		}
		o.rates = append(o.rates, n)
	}
	o.protos = strings.Split(protos, ",")
	for _, p := range o.protos {
		if p != protoHTTP && p != protoGRPC {
			log.Fatalf("-protocols: unknown %q", p)
		}
	}
	o.topos = []string{"direct"}
	for _, t := range strings.Split(topos, ",") {
		switch t {
		case "direct":
		case "skein", "nginx", "haproxy":
			o.topos = append(o.topos, t)
		default:
			log.Fatalf("-topologies: unknown %q", t)
		}
	}
	if o.skeinMTLS != "auto" && o.skeinMTLS != "strict" {
		log.Fatalf("-skein-mtls: want auto or strict")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

// topology is one way from fortio to the server.
type topology struct {
	name  string
	label string
	port  map[string]int // protocol -> fortio's target port
	roots []int          // proxy process roots (outbound, inbound); none for direct
}

// measurement is one (protocol, rate, topology) run.
type measurement struct {
	Topology string  `json:"topology"`
	Protocol string  `json:"protocol"`
	Rate     int     `json:"rate"` // 0: max
	Result   result  `json:"result"`
	CPU      float64 `json:"proxyCpuSeconds"` // both proxies
	MaxMemMB float64 `json:"proxyMemMB"`      // largest of the two, sampled during the run
	// Skein only: Go heap allocations per request, summed over both sidecars.
	AllocsPerReq float64 `json:"allocsPerRequest,omitempty"`
	BytesPerReq  float64 `json:"allocBytesPerRequest,omitempty"`
}

type report struct {
	Date         string             `json:"date"`
	Host         string             `json:"host"`
	CPU          string             `json:"cpu"`
	Cores        int                `json:"cores"`
	Go           string             `json:"go"`
	Command      string             `json:"command"`
	Duration     string             `json:"duration"`
	Labels       map[string]string  `json:"labels"`
	Workers      int                `json:"workers"`
	Warmup       string             `json:"warmup"`
	IdleMemMB    map[string]float64 `json:"idleMemMB"` // topology -> largest of its two proxies
	Measurements []measurement      `json:"measurements"`
}

func run(ctx context.Context, o options) error {
	skein, err := filepath.Abs(o.skein)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "skein-bench-")
	if err != nil {
		return err
	}
	if os.Getenv("BENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	} else {
		log.Printf("keeping %s", dir)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	host, _ := os.Hostname()
	rep := &report{
		Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Host: host, CPU: cpuModel(), Cores: runtime.NumCPU(),
		Go: runtime.Version(), Command: strings.Join(os.Args, " "), Duration: o.dur.String(),
		Labels: map[string]string{"direct": "direct"}, IdleMemMB: map[string]float64{},
		Workers: o.workers, Warmup: o.warmup.String(),
	}
	log.Printf("starting skein up (fortio server as the workload)")
	mesh, err := startSkein(ctx, skein, o.fortio, dir, o.skeinMTLS, o.profile > 0)
	if err != nil {
		return err
	}
	defer mesh.stop()
	topos := map[string]*topology{"direct": {name: "direct", label: "direct", port: mesh.app}}
	for _, name := range o.topos[1:] {
		switch name {
		case "skein":
			topos[name] = &topology{name: name, label: "skein (" + mesh.mtls + ")", port: mesh.client, roots: mesh.proxies}
		case "nginx", "haproxy":
			certs, err := writeCerts(dir)
			if err != nil {
				return err
			}
			log.Printf("starting the %s pair", name)
			pp, err := startPair(ctx, name, dir, mesh.app, certs, o.workers)
			if err != nil {
				return err
			}
			defer pp.stop()
			topos[name] = &topology{name: name, label: name + " (mTLS)", port: pp.out, roots: pp.roots()}
		}
	}
	for _, name := range o.topos {
		t := topos[name]
		rep.Labels[name] = t.label
		for _, r := range t.roots {
			rep.IdleMemMB[name] = max(rep.IdleMemMB[name], memoryMB(r))
		}
	}
	for _, proto := range o.protos {
		for _, rate := range o.rates {
			for _, name := range o.topos {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				t := topos[name]
				log.Printf("%s %s at %s", proto, t.label, rateName(rate))
				if _, err := load(ctx, o.fortio, proto, t.port[proto], rate, o.warmup); err != nil {
					return err
				}
				m, err := measure(ctx, o, mesh, t, proto, rate)
				if err != nil {
					return err
				}
				if m.Result.Count == 0 || m.Result.Errors == m.Result.Count {
					return fmt.Errorf("%s %s at %s: every request failed (%v)", proto, t.label, rateName(rate), m.Result.Codes)
				}
				rep.Measurements = append(rep.Measurements, m)
			}
		}
	}
	if o.profile > 0 {
		if err := profileSkein(ctx, o, mesh); err != nil {
			return err
		}
	}
	md := markdown(rep, o)
	fmt.Print(md)
	if err := os.WriteFile(filepath.Join(o.out, "report.md"), []byte(md), 0o644); err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(o.out, "results.json"), raw, 0o644); err != nil {
		return err
	}
	return writePlot(filepath.Join(o.out, "latency.png"), panels(rep, o), len(o.protos))
}

// measure runs fortio once while sampling the proxies' CPU and memory.
func measure(ctx context.Context, o options, mesh *skeinMesh, t *topology, proto string, rate int) (measurement, error) {
	m := measurement{Topology: t.name, Protocol: proto, Rate: rate}
	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, r := range t.roots {
				m.MaxMemMB = max(m.MaxMemMB, memoryMB(r))
			}
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var mallocs0, bytes0 float64
	if t.name == "skein" {
		mallocs0, bytes0 = mesh.goCounters(ctx)
	}
	cpu0 := cpuSeconds(t.roots)
	res, err := load(ctx, o.fortio, proto, t.port[proto], rate, o.dur)
	m.CPU = cpuSeconds(t.roots) - cpu0
	stopSampling()
	wg.Wait()
	if err != nil {
		return m, err
	}
	m.Result = res
	if t.name == "skein" && res.Count > 0 {
		mallocs1, bytes1 := mesh.goCounters(ctx)
		// The admin scrape itself allocates a little; at thousands of requests it is noise.
		m.AllocsPerReq = (mallocs1 - mallocs0) / float64(res.Count)
		m.BytesPerReq = (bytes1 - bytes0) / float64(res.Count)
	}
	return m, nil
}

// profileSkein takes a CPU profile of both sidecars under 1,000 RPS HTTP/1.1 load, and
// their heap (alloc) profiles right after.
func profileSkein(ctx context.Context, o options, mesh *skeinMesh) error {
	log.Printf("profiling the skein sidecars for %v at 1000 RPS", o.profile)
	loadErr := make(chan error, 1)
	go func() {
		_, err := load(ctx, o.fortio, protoHTTP, mesh.client[protoHTTP], 1000, o.profile+4*time.Second)
		loadErr <- err
	}()
	time.Sleep(2 * time.Second)
	var wg sync.WaitGroup
	errs := make([]error, len(mesh.admins))
	for i, a := range mesh.admins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []string{"client", "server"}[i]
			b, err := httpGet(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", a, int(o.profile.Seconds())))
			if err != nil {
				errs[i] = fmt.Errorf("%s sidecar CPU profile (is --pprof available?): %w", name, err)
				return
			}
			errs[i] = os.WriteFile(filepath.Join(o.out, name+"-sidecar.cpu.pprof"), b, 0o644)
		}()
	}
	wg.Wait()
	if err := <-loadErr; err != nil {
		return err
	}
	for i, a := range mesh.admins {
		if errs[i] != nil {
			return errs[i]
		}
		name := []string{"client", "server"}[i]
		b, err := httpGet(ctx, "http://"+a+"/debug/pprof/allocs")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(o.out, name+"-sidecar.allocs.pprof"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func rateName(rate int) string {
	if rate == 0 {
		return "max"
	}
	return strconv.Itoa(rate)
}

// replotFile renders a saved results.json again (after editing its labels, say).
func replotFile(path, out string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		return err
	}
	o := options{workers: rep.Workers}
	o.warmup, _ = time.ParseDuration(rep.Warmup)
	seen := map[string]bool{}
	for _, m := range rep.Measurements {
		for _, k := range []string{"p" + m.Protocol, "r" + strconv.Itoa(m.Rate), "t" + m.Topology} {
			if seen[k] {
				continue
			}
			seen[k] = true
			switch k[0] {
			case 'p':
				o.protos = append(o.protos, m.Protocol)
			case 'r':
				o.rates = append(o.rates, m.Rate)
			case 't':
				o.topos = append(o.topos, m.Topology)
			}
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "report.md"), []byte(markdown(&rep, o)), 0o644); err != nil {
		return err
	}
	return writePlot(filepath.Join(out, "latency.png"), panels(&rep, o), len(o.protos))
}
