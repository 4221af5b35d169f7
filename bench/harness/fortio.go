package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

const (
	protoHTTP = "http1"
	protoGRPC = "grpc"
)

// result is one fortio run.
type result struct {
	RPS     float64            `json:"rps"`
	Count   int                `json:"count"`
	Errors  int                `json:"errors"`
	P       map[string]float64 `json:"percentilesMs"` // "50", "90", "99", "99.9" -> ms
	CDF     []cdfPoint         `json:"cdf"`           // latency histogram, cumulative
	Seconds float64            `json:"seconds"`
	Codes   map[string]int     `json:"codes"`
}

// cdfPoint: Percent of requests took at most Ms.
type cdfPoint struct {
	Ms      float64 `json:"ms"`
	Percent float64 `json:"percent"`
}

var percentiles = []string{"50", "90", "99", "99.9"}

// load runs fortio at rate (0: as fast as it can) for dur, 16 connections, 1 KB payload:
// an HTTP/1.1 POST to http://127.0.0.1:port/ (fortio's echo answers with the same 1 KB),
// or a gRPC ping with a 1 KB payload to 127.0.0.1:port. The histogram resolution is
// 10 µs (fortio's default, 1 ms, would put every sub-millisecond request in one bucket).
func load(ctx context.Context, fortio, proto string, port, rate int, dur time.Duration) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, dur+2*time.Minute)
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
	args := []string{"load", "-qps", qps, "-c", "16", "-t", dur.String(), "-payload-size", "1024",
		"-p", "50,90,99,99.9", "-r", "0.00001", "-json", tmp.Name(), "-quiet", "-loglevel", "Error"}
	target := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	if proto == protoGRPC {
		args = append(args, "-grpc", "-ping")
		target = "127.0.0.1:" + strconv.Itoa(port)
	}
	args = append(args, target)
	cmd := exec.CommandContext(ctx, fortio, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return result{}, fmt.Errorf("fortio %v: %v\n%s", args, err, out)
	}
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		return result{}, err
	}
	var fr struct {
		ActualQPS         float64
		ActualDuration    int64
		RetCodes          map[string]int
		DurationHistogram struct {
			Count       int
			Percentiles []struct{ Percentile, Value float64 }
			Data        []struct{ End, Percent float64 }
		}
		ErrorsDurationHistogram struct{ Count int }
	}
	if err := json.Unmarshal(b, &fr); err != nil {
		return result{}, fmt.Errorf("fortio JSON: %w", err)
	}
	r := result{RPS: fr.ActualQPS, Count: fr.DurationHistogram.Count, Errors: fr.ErrorsDurationHistogram.Count,
		P: map[string]float64{}, Codes: fr.RetCodes, Seconds: float64(fr.ActualDuration) / 1e9}
	ok := "200"
	if proto == protoGRPC {
		ok = "SERVING"
	}
	if r.Errors == 0 {
		for code, n := range fr.RetCodes {
			if code != ok {
				r.Errors += n
			}
		}
	}
	for _, p := range fr.DurationHistogram.Percentiles {
		r.P[strconv.FormatFloat(p.Percentile, 'f', -1, 64)] = p.Value * 1000
	}
	for _, d := range fr.DurationHistogram.Data {
		r.CDF = append(r.CDF, cdfPoint{Ms: d.End * 1000, Percent: d.Percent})
	}
	return r, nil
}
