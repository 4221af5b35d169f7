// Package api is the local control API that a running `skein up` serves on loopback and
// that `skein status`, `skein exec` and `skein down` use. The address is found through
// the state dir (see internal/runtime/local/statedir).
package api

import "time"

// Status is the answer of GET /api/status.
type Status struct {
	// Generation of the newest accepted configuration.
	Generation int64 `json:"generation"`
	// ConfigDir is the folder being watched.
	ConfigDir string `json:"configDir"`
	// ConfigErrors lists the problems of the newest rejected edit ("file:line:col: ...");
	// empty when the newest files were accepted. The previous config keeps serving.
	ConfigErrors  []string  `json:"configErrors,omitempty"`
	ConfigErrorAt time.Time `json:"configErrorAt,omitzero"`
	// ControlPlaneError is a translation or consistency error of the newest push.
	ControlPlaneError string `json:"controlPlaneError,omitempty"`
	Isolation         string `json:"isolation"`
	// PodSubnet and PodGateway (isolation netns): the pods' subnet and the bridge's
	// address, where pods reach this machine.
	PodSubnet  string `json:"podSubnet,omitempty"`
	PodGateway string `json:"podGateway,omitempty"`
	XDSAddress string `json:"xdsAddress"`
	// Monitoring serves the control plane's Prometheus metrics at /metrics.
	Monitoring string `json:"monitoring,omitempty"`
	// Dashboard is the address of the web dashboard, when served.
	Dashboard string     `json:"dashboard,omitempty"`
	Workloads []Workload `json:"workloads"`
	Proxies   []Proxy    `json:"proxies"`
	// Ready is true when every replica runs and every proxy has ACKed the newest config.
	Ready bool `json:"ready"`
	// NotReady says why Ready is false, one line per reason.
	NotReady []string `json:"notReady,omitempty"`
}

// Workload is one Workload object and its replicas.
type Workload struct {
	Name      string    `json:"name"`
	Namespace string    `json:"namespace"`
	Replicas  []Replica `json:"replicas"`
}

// Replica is one running copy of a workload with its sidecar.
type Replica struct {
	Index int `json:"index"`
	// State of the app process: starting, running, backoff, exited, stopped.
	State    string `json:"state"`
	Pid      int    `json:"pid,omitempty"`
	Restarts int    `json:"restarts"`
	// Port is the app's $PORT.
	Port int `json:"port"`
	// Inbound is the sidecar's inbound address for the first container port.
	Inbound string `json:"inbound,omitempty"`
	// InboundPorts maps each container port to the sidecar's inbound address.
	InboundPorts map[string]string `json:"inboundPorts,omitempty"`
	// Outbound is the sidecar's explicit HTTP proxy address (HTTP_PROXY of the app).
	Outbound string `json:"outbound,omitempty"`
	// Admin is the sidecar's admin address (/ready, /config_dump, /stats/prometheus,
	// /tap, POST /explain).
	Admin string `json:"admin"`
	// IP and Netns are the pod's address and network namespace (isolation netns).
	IP    string `json:"ip,omitempty"`
	Netns string `json:"netns,omitempty"`
	// Metrics is the sidecar's dedicated /stats/prometheus address (Istio's 15020).
	Metrics string `json:"metrics,omitempty"`
	// AccessLog is the sidecar's JSON access log file, when written.
	AccessLog string `json:"accessLog,omitempty"`
	// Workload labels (app, version), for tools that group by them.
	Labels map[string]string `json:"labels,omitempty"`
	// ProxyID is the xDS node id of the sidecar.
	ProxyID    string `json:"proxyID"`
	ProxyState string `json:"proxyState"`
	ProxyPid   int    `json:"proxyPid,omitempty"`
	// ProxyUID and AppUID are the users the sidecar and the app run as when skein up
	// (as root) gives each replica users of its own; absent when they run as skein
	// up's user.
	ProxyUID int `json:"proxyUID,omitempty"`
	AppUID   int `json:"appUID,omitempty"`
}

// Proxy is the control plane's view of one xDS client.
type Proxy struct {
	ID        string `json:"id"`
	Connected bool   `json:"connected"`
	// Version is the newest config version set for this proxy.
	Version string `json:"version"`
	// Acked maps LDS/RDS/CDS/EDS to the last version the proxy ACKed.
	Acked  map[string]string `json:"acked,omitempty"`
	InSync bool              `json:"inSync"`
	// NACK is the proxy's last rejection of the newest config, if any.
	NACK *NACK `json:"nack,omitempty"`
	// SPIFFEID and CertExpiry describe the workload certificate the CA last issued to
	// this proxy (mTLS); empty without one.
	SPIFFEID   string    `json:"spiffeID,omitempty"`
	CertExpiry time.Time `json:"certExpiry,omitzero"`
}

// NACK is a config rejection reported by a proxy.
type NACK struct {
	Type    string    `json:"type"`
	Version string    `json:"version"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// ExecEnv is the answer of GET /api/exec: how to run a command as a workload would.
type ExecEnv struct {
	Workload  string   `json:"workload"`
	Namespace string   `json:"namespace"`
	Replica   int      `json:"replica"`
	Env       []string `json:"env"`
	Dir       string   `json:"dir,omitempty"`
	// Netns, in isolation netns, is the pod's network namespace: the command runs in
	// it (as the app does), not on the host.
	Netns string `json:"netns,omitempty"`
}
