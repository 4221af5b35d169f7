package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/controlplane"
	"skein.dev/skein/internal/model"
)

// Default addresses of skein control: istiod's plaintext xDS and monitoring ports, and
// its ControlZ introspection port for the local API.
const (
	defaultControlXDS        = "127.0.0.1:15010"
	defaultControlAPI        = "127.0.0.1:9876"
	defaultControlMonitoring = "127.0.0.1:15014"
)

func newControlCmd() *cobra.Command {
	var xdsAddr, apiAddr, monAddr, logLevel, outboundPolicy string
	var caDir, trustDomain, rootNamespace string
	var detection, certTTL time.Duration
	cmd := &cobra.Command{
		Use:   "control DIR",
		Short: "Run only the control plane (as istiod), serving xDS from a folder of YAML",
		Long: `control serves ADS on --xds-address from the Kubernetes, Istio, Gateway API and
skein YAML in DIR, and runs no workload and no proxy: connect skein proxies, Envoys or
proxyless gRPC clients (skein bootstrap --grpc --xds-address ...) yourself. Endpoints
come from the config: Istio WorkloadEntries (selected by Services and ServiceEntries by
their labels) and ServiceEntry endpoints; skein Workloads are not run.

Files in DIR are watched as by skein up: a valid edit applies without restart; an
invalid one is reported (file:line: field) and the previous config keeps serving.
skein status --api <api-address> shows the connected nodes and their ACK/NACK state.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := model.ParseOutboundTrafficPolicy(outboundPolicy)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--outbound-traffic-policy: %w", err)}
			}
			if detection < 0 {
				return &exitError{code: 2, err: fmt.Errorf("--protocol-detection-timeout %v: must not be negative (0 waits forever)", detection)}
			}
			if detection == 0 {
				detection = -1 // the model's "no timeout"
			}
			if xdsAddr == "" {
				return &exitError{code: 2, err: fmt.Errorf("--xds-address is required")}
			}
			return controlplane.Run(cmd.Context(), controlplane.Options{
				ConfigDir:                args[0],
				XDSAddress:               xdsAddr,
				APIAddress:               apiAddr,
				MonitoringAddress:        monAddr,
				CADir:                    caDir,
				CertTTL:                  certTTL,
				TrustDomain:              trustDomain,
				RootNamespace:            rootNamespace,
				OutboundTrafficPolicy:    policy,
				ProtocolDetectionTimeout: detection,
				Logger:                   newLogger(logLevel),
				Out:                      cmd.OutOrStdout(),
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&xdsAddr, "xds-address", defaultControlXDS, "where to serve ADS and the CA's CSR service (plaintext gRPC); port 0 picks one")
	f.StringVar(&apiAddr, "api-address", defaultControlAPI, "where to serve the local API (skein status --api); empty: none")
	f.StringVar(&monAddr, "monitoring-address", defaultControlMonitoring, "where to serve the control plane's /metrics; empty: none")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&outboundPolicy, "outbound-traffic-policy", string(model.OutboundAllowAny), "ALLOW_ANY passes captured traffic to non-mesh addresses through, REGISTRY_ONLY refuses it")
	f.DurationVar(&detection, "protocol-detection-timeout", model.DefaultProtocolDetectionTimeout, "how long a capturing sidecar waits for a client's first bytes on a port without a declared protocol before treating it as TCP (0: forever)")
	f.StringVar(&caDir, "ca-dir", "", "folder of the mesh CA; Istio plug-in files (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) there are used instead of a generated root (default: an ephemeral root, new at every start)")
	f.DurationVar(&certTTL, "cert-ttl", 24*time.Hour, "lifetime of workload certificates")
	f.StringVar(&trustDomain, "trust-domain", "cluster.local", "trust domain of workload SPIFFE IDs")
	f.StringVar(&rootNamespace, "root-namespace", "istio-system", "mesh root namespace (Istio's meshConfig.rootNamespace): its policies without a selector apply mesh-wide")
	return cmd
}
