package stats

import (
	"runtime/metrics"

	"github.com/prometheus/client_golang/prometheus"
)

// gcCPU is the runtime's estimate of CPU time spent in the garbage collector (mark
// workers, assists, pauses): what GOGC and the memory limit trade against RSS, next to
// process_cpu_seconds_total.
func gcCPU() prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "skein_go_gc_cpu_seconds_total",
		Help: "Estimated CPU time spent in the Go garbage collector (runtime/metrics /cpu/classes/gc/total:cpu-seconds).",
	}, func() float64 {
		s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindFloat64 {
			return 0
		}
		return s[0].Value.Float64()
	})
}
