// Command harness measures what the mesh adds to a request: fortio drives load at fixed
// rates (1 KB payload, 16 connections, HTTP/1.1) straight at an echo server, then at the
// same server through two skein sidecars, in one run on one machine, and prints a
// Markdown report: latency percentiles, added latency, and proxy CPU and memory.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	skein := flag.String("skein", "bin/skein", "skein binary")
	fortio := flag.String("fortio", "fortio", "fortio binary")
	quick := flag.Bool("quick", false, "1,000 RPS only, shorter runs")
	dur := flag.Duration("duration", 0, "duration of each load run (default 15s quick, 30s full)")
	flag.Parse()
	if *dur == 0 {
		*dur = 30 * time.Second
		if *quick {
			*dur = 15 * time.Second
		}
	}
	rates := []int{1000}
	if !*quick {
		rates = append(rates, 4000, 0) // 0: as fast as possible
	}
	if err := run(*skein, *fortio, rates, *dur); err != nil {
		log.Fatal(err)
	}
}

type status struct {
	Workloads []struct {
		Name     string `json:"name"`
		Replicas []struct {
			Port     int `json:"port"`
			ProxyPid int `json:"proxyPid"`
		} `json:"replicas"`
	} `json:"workloads"`
}

func run(skein, fortio string, rates []int, dur time.Duration) error {
	skein, _ = filepath.Abs(skein)
	state, err := os.MkdirTemp("", "skein-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	up := exec.Command(skein, "up", "bench/mesh", "--state-dir", state, "--isolation", "none")
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var upOut bytes.Buffer
	up.Stdout, up.Stderr = &upOut, &upOut
	if err := up.Start(); err != nil {
		return err
	}
	defer func() {
		_ = up.Process.Signal(os.Interrupt)
		_ = up.Wait()
	}()
	if out, err := exec.Command(skein, "status", "--state-dir", state, "--wait", "60s").CombinedOutput(); err != nil {
		return fmt.Errorf("mesh not ready: %v\n%s\n%s", err, out, upOut.String())
	}
	out, err := exec.Command(skein, "status", "--state-dir", state, "-o", "json").Output()
	if err != nil {
		return err
	}
	var st status
	if err := json.Unmarshal(out, &st); err != nil {
		return err
	}
	var serverPort int
	var proxyPids []int
	for _, w := range st.Workloads {
		for _, r := range w.Replicas {
			proxyPids = append(proxyPids, r.ProxyPid)
			if w.Name == "server" {
				serverPort = r.Port
			}
		}
	}
	envOut, err := exec.Command(skein, "exec", "--state-dir", state, "client", "--", "env").Output()
	if err != nil {
		return fmt.Errorf("exec env: %w", err)
	}
	meshPort := ""
	for _, l := range strings.Split(string(envOut), "\n") {
		if v, ok := strings.CutPrefix(l, "SERVER_SERVICE_PORT_HTTP="); ok {
			meshPort = v
		}
	}
	if serverPort == 0 || meshPort == "" {
		return fmt.Errorf("could not find server port (%d) or mesh port (%q)", serverPort, meshPort)
	}
	direct := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(serverPort)) + "/"
	viaMesh := "http://" + net.JoinHostPort("127.0.0.1", meshPort) + "/"

	host, _ := os.Hostname()
	fmt.Printf("## Run of %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Printf("Machine: %s, %d cores (%s/%s), %s. Load: fortio, %v per run, 16 connections, 1 KB POST payload, HTTP/1.1. Server: `skein echo`. Mesh path: fortio → client sidecar → server sidecar → server (plaintext between sidecars; mTLS is a later issue).\n\n",
		host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel(), dur)
	fmt.Println("| rate | path | achieved RPS | p50 ms | p90 ms | p99 ms | p99.9 ms | added p50 | added p99 | proxy CPU s / 1k req (both) | proxy RSS MB (max of 2) | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	idle := maxRSS(proxyPids)
	for _, rate := range rates {
		d, err := load(fortio, direct, rate, dur)
		if err != nil {
			return err
		}
		cpu0 := cpuSeconds(proxyPids)
		m, err := load(fortio, viaMesh, rate, dur)
		if err != nil {
			return err
		}
		cpu := cpuSeconds(proxyPids) - cpu0
		rateName := strconv.Itoa(rate)
		if rate == 0 {
			rateName = "max"
		}
		fmt.Printf("| %s | direct | %.0f | %.3f | %.3f | %.3f | %.3f | | | | | %d |\n", rateName, d.rps, d.p[50], d.p[90], d.p[99], d.p[99.9], d.errors)
		fmt.Printf("| %s | 2 sidecars | %.0f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f | %d |\n", rateName, m.rps, m.p[50], m.p[90], m.p[99], m.p[99.9],
			m.p[50]-d.p[50], m.p[99]-d.p[99], cpu/float64(max(m.count, 1))*1000, maxRSS(proxyPids), m.errors)
	}
	fmt.Printf("\nProxy RSS idle (max of the 2 sidecars): %.1f MB.\n", idle)
	return nil
}

type result struct {
	rps    float64
	count  int
	errors int
	p      map[float64]float64 // percentile -> ms
}

func load(fortio, url string, rate int, dur time.Duration) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dur+time.Minute)
	defer cancel()
	tmp, err := os.CreateTemp("", "fortio-*.json")
	if err != nil {
		return result{}, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	qps := strconv.Itoa(rate)
	if rate == 0 {
		qps = "-1"
	}
	cmd := exec.CommandContext(ctx, fortio, "load", "-qps", qps, "-c", "16", "-t", dur.String(),
		"-payload-size", "1024", "-p", "50,90,99,99.9", "-json", tmp.Name(), "-quiet", url)
	if out, err := cmd.CombinedOutput(); err != nil {
		return result{}, fmt.Errorf("fortio %s: %v\n%s", url, err, out)
	}
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		return result{}, err
	}
	var fr struct {
		ActualQPS         float64
		RetCodes          map[string]int
		DurationHistogram struct {
			Count       int
			Percentiles []struct{ Percentile, Value float64 }
		}
	}
	if err := json.Unmarshal(b, &fr); err != nil {
		return result{}, err
	}
	r := result{rps: fr.ActualQPS, count: fr.DurationHistogram.Count, p: map[float64]float64{}}
	for code, n := range fr.RetCodes {
		if code != "200" {
			r.errors += n
		}
	}
	for _, p := range fr.DurationHistogram.Percentiles {
		r.p[p.Percentile] = p.Value * 1000
	}
	return r, nil
}

// cpuSeconds sums user+system CPU time of the processes, from /proc/PID/stat.
func cpuSeconds(pids []int) float64 {
	var total float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		total += (utime + stime) / 100 // USER_HZ is 100 on Linux
	}
	return total
}

func maxRSS(pids []int) float64 {
	var m float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
				m = max(m, kb/1024)
			}
		}
	}
	return m
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}
