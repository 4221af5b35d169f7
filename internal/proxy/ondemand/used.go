package ondemand

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// UsedHosts returns a gather function for Report: the destination services of the
// proxy's outbound requests (istio_requests_total, reporter="source") whose count
// grew since the previous call. It reads the metrics the proxy keeps anyway, so the
// request path does no extra work. Needs the destination_service label (not dropped).
func UsedHosts(g prometheus.Gatherer) func() []string {
	last := map[string]float64{}
	return func() []string {
		fams, err := g.Gather()
		if err != nil {
			return nil
		}
		now := map[string]float64{}
		for _, f := range fams {
			if f.GetName() != "istio_requests_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				var reporter, service string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "reporter":
						reporter = l.GetValue()
					case "destination_service":
						service = l.GetValue()
					}
				}
				if reporter == "source" && service != "" && service != "unknown" {
					now[service] += m.GetCounter().GetValue()
				}
			}
		}
		var out []string
		for s, v := range now {
			if v > last[s] {
				out = append(out, s)
			}
		}
		last = now
		sort.Strings(out)
		return out
	}
}
