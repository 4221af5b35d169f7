package stats

import "github.com/prometheus/client_golang/prometheus"

// RBAC counts the decisions of RBAC filters, as Envoy's rbac.allowed / rbac.denied /
// rbac.logged stats do.
type RBAC struct {
	decisions *prometheus.CounterVec
}

// NewRBAC registers the RBAC metrics in reg.
func NewRBAC(reg prometheus.Registerer) *RBAC {
	r := &RBAC{decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skein_rbac_decisions_total",
		Help: "RBAC filter decisions, by listener, filter action (ALLOW, DENY, LOG), result (allowed, denied, logged, not_logged) and matched policy.",
	}, []string{"listener", "action", "result", "policy"})}
	reg.MustRegister(r.decisions)
	return r
}

// Decision records one decision. A nil *RBAC records nothing.
func (r *RBAC) Decision(listener, action, result, policy string) {
	if r == nil {
		return
	}
	r.decisions.WithLabelValues(listener, action, result, policy).Inc()
}
