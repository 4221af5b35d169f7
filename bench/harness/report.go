package main

import (
	"fmt"
	"strings"
)

var protoNames = map[string]string{protoHTTP: "HTTP/1.1", protoGRPC: "gRPC"}

func markdown(rep *report, o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Run of %s\n\n", rep.Date)
	fmt.Fprintf(&b, "Command: `%s`. Machine: %s, %d cores (%s), %s. Load: fortio v1.68.2, %s per run after %v warm-up, 16 connections, 1 KB payload (HTTP/1.1 POST echoed back; gRPC ping). Server: `fortio server`. Proxy workers: nginx %d, HAProxy %d threads, skein GOMAXPROCS %d.\n\n",
		rep.Command, rep.Host, rep.Cores, rep.CPU, rep.Go, rep.Duration, o.warmup, o.workers, o.workers, rep.Cores)
	byKey := map[string]measurement{}
	for _, m := range rep.Measurements {
		byKey[fmt.Sprintf("%s|%d|%s", m.Protocol, m.Rate, m.Topology)] = m
	}
	for _, proto := range o.protos {
		for _, rate := range o.rates {
			fmt.Fprintf(&b, "### %s at %s RPS\n\n", protoNames[proto], rateName(rate))
			b.WriteString("| path | RPS | p50 ms | p90 | p99 | p99.9 | added p50 | added p90 | added p99 | added p99.9 | CPU s / 1k req, pair | per proxy | mem MB (max of pair) | errors |\n")
			b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
			d, haveDirect := byKey[fmt.Sprintf("%s|%d|direct", proto, rate)]
			for _, name := range o.topos {
				m, ok := byKey[fmt.Sprintf("%s|%d|%s", proto, rate, name)]
				if !ok {
					continue
				}
				r := m.Result
				fmt.Fprintf(&b, "| %s | %.0f | %.3f | %.3f | %.3f | %.3f |", rep.Labels[name], r.RPS, r.P["50"], r.P["90"], r.P["99"], r.P["99.9"])
				if name == "direct" || !haveDirect {
					b.WriteString(" | | | | | | |")
				} else {
					for _, p := range percentiles {
						fmt.Fprintf(&b, " %.3f |", r.P[p]-d.Result.P[p])
					}
					per1k := m.CPU / float64(max(r.Count, 1)) * 1000
					fmt.Fprintf(&b, " %.3f | %.3f | %.1f |", per1k, per1k/2, m.MaxMemMB)
				}
				fmt.Fprintf(&b, " %d |\n", r.Errors)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("### Per proxy\n\n")
	b.WriteString("| proxy | idle mem MB | mem MB at 1,000 RPS (HTTP/1.1) | max RPS per proxy core, HTTP/1.1 | max RPS per proxy core, gRPC | Go allocs / req / proxy (HTTP/1.1, 1,000 RPS) | Go bytes / req / proxy |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, name := range o.topos[1:] {
		fmt.Fprintf(&b, "| %s | %.1f |", rep.Labels[name], rep.IdleMemMB[name])
		if m, ok := byKey[fmt.Sprintf("%s|1000|%s", protoHTTP, name)]; ok {
			fmt.Fprintf(&b, " %.1f |", m.MaxMemMB)
		} else {
			b.WriteString(" |")
		}
		for _, proto := range []string{protoHTTP, protoGRPC} {
			// Throughput per core: requests per second divided by the cores one proxy used.
			if m, ok := byKey[fmt.Sprintf("%s|0|%s", proto, name)]; ok && m.CPU > 0 {
				coresPerProxy := m.CPU / m.Result.Seconds / 2
				fmt.Fprintf(&b, " %.0f (%.0f RPS on %.2f cores) |", m.Result.RPS/coresPerProxy, m.Result.RPS, coresPerProxy)
			} else {
				b.WriteString(" |")
			}
		}
		if m, ok := byKey[fmt.Sprintf("%s|1000|%s", protoHTTP, name)]; ok && m.AllocsPerReq > 0 {
			fmt.Fprintf(&b, " %.0f | %.0f |\n", m.AllocsPerReq/2, m.BytesPerReq/2)
		} else {
			b.WriteString(" | |\n")
		}
	}
	b.WriteString("\nAdded latency is the path's percentile minus direct's at the same rate and protocol (a difference of percentiles, not a percentile of differences). CPU is user+system time of both proxies' process trees from /proc over the run; memory is the largest process's RSS plus the private memory of its other processes (nginx workers), sampled every 250 ms.\n")
	return b.String()
}

// panels: one chart per protocol and fixed rate (max-rate runs are throughput tests).
func panels(rep *report, o options) []panel {
	var out []panel
	for _, rate := range o.rates {
		if rate == 0 {
			continue
		}
		for _, proto := range o.protos {
			pn := panel{title: fmt.Sprintf("%s at %d RPS, 16 connections, 1 KB", protoNames[proto], rate)}
			for _, name := range o.topos {
				for _, m := range rep.Measurements {
					if m.Protocol == proto && m.Rate == rate && m.Topology == name {
						pn.series = append(pn.series, series{name: rep.Labels[name], cdf: m.Result.CDF})
					}
				}
			}
			out = append(out, pn)
		}
	}
	return out
}
