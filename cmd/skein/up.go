package main

import (
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"skein.dev/skein/examples/demo"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy/proxycmd"
	"skein.dev/skein/internal/proxy/telemetry"
	"skein.dev/skein/internal/runtime/local"
	"skein.dev/skein/internal/runtime/local/podnet"
	"skein.dev/skein/internal/runtime/local/statedir"
)

func newUpCmd() *cobra.Command {
	var stateDir, isolation, logLevel, podCIDR, outboundPolicy string
	var sharedUser bool
	var caDir, trustDomain, rootNamespace string
	var detection, certTTL time.Duration
	var tr proxycmd.TracingFlags
	var dropLabels []string
	var noAccessLog bool
	var proxyBinary string
	cmd := &cobra.Command{
		Use:   "up [DIR]",
		Short: "Run a whole mesh on this machine from a folder of YAML (default: the built-in demo)",
		Long: `up starts the control plane, one sidecar per workload replica and each workload's
process, from the Kubernetes, Istio and skein Workload YAML in DIR. Files in DIR are
watched: a valid edit applies without restart; an invalid one is reported (file:line:
field) and the previous config keeps serving. Ctrl-C (or skein down) stops everything.
Without DIR, the built-in demo (frontend → catalog v1/v2 → inventory) is used.

Isolation: as root with ip and iptables, each replica runs as a pod (own network
namespace on a bridge, traffic captured by iptables as istio-init does, DNS answered
by its sidecar): apps call http://catalog:8080/ unmodified. Otherwise everything runs
on 127.0.0.1 and apps reach the mesh through HTTP_PROXY and per-service ports.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			log := newLogger(logLevel)
			proxyBin, note, err := local.ResolveProxyBinary(self, proxyBinary)
			if err != nil {
				return fmt.Errorf("--proxy-binary: %w", err)
			}
			log.Info(note)
			cidr, err := netip.ParsePrefix(podCIDR)
			if err != nil || !cidr.Addr().Is4() {
				return fmt.Errorf("--pod-cidr %q: want an IPv4 CIDR such as %s", podCIDR, podnet.DefaultCIDR)
			}
			policy, err := model.ParseOutboundTrafficPolicy(outboundPolicy)
			if err != nil {
				return fmt.Errorf("--outbound-traffic-policy: %w", err)
			}
			if detection < 0 {
				return fmt.Errorf("--protocol-detection-timeout %v: must not be negative (0 waits forever)", detection)
			}
			if detection == 0 {
				detection = -1 // the model's "no timeout"
			}
			dir := ""
			if len(args) == 1 {
				dir = args[0]
			} else {
				dir = filepath.Join(stateDir, "demo")
				if err := extractDemo(dir); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "using the built-in demo, written to %s\n", dir)
			}
			if _, err := tr.Options(); err != nil {
				return err
			}
			if err := telemetry.ValidateDropLabels(dropLabels); err != nil {
				return fmt.Errorf("--metrics-drop-labels: %w", err)
			}
			proxyArgs := tr.Args()
			if len(dropLabels) > 0 {
				proxyArgs = append(proxyArgs, "--metrics-drop-labels", strings.Join(dropLabels, ","))
			}
			return local.Run(cmd.Context(), local.Options{
				ConfigDir:   dir,
				StateDir:    stateDir,
				Isolation:   isolation,
				Self:        self,
				ProxyBinary: proxyBin,
				Logger:      log,
				Out:         cmd.OutOrStdout(),

				CADir:         caDir,
				CertTTL:       certTTL,
				TrustDomain:   trustDomain,
				RootNamespace: rootNamespace,

				PodCIDR:                  cidr,
				OutboundTrafficPolicy:    policy,
				ProtocolDetectionTimeout: detection,
				ProxyArgs:                proxyArgs,
				NoAccessLogs:             noAccessLog,
				SharedUser:               sharedUser,
				Dashboard:                dashboardServer(),
			})
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", statedir.Default(), "folder for this instance's record and logs ($"+statedir.EnvVar+")")
	cmd.Flags().StringVar(&isolation, "isolation", "auto", "workload isolation: auto, none or netns")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&podCIDR, "pod-cidr", podnet.DefaultCIDR.String(), "isolation netns: where pod addresses come from (each instance takes a /24 of it)")
	cmd.Flags().StringVar(&outboundPolicy, "outbound-traffic-policy", string(model.OutboundAllowAny), "isolation netns: ALLOW_ANY passes traffic to non-mesh addresses through, REGISTRY_ONLY refuses it")
	cmd.Flags().DurationVar(&detection, "protocol-detection-timeout", model.DefaultProtocolDetectionTimeout, "isolation netns: how long a sidecar waits for a client's first bytes on a port without a declared protocol before treating it as TCP (0: forever)")
	cmd.Flags().StringVar(&caDir, "ca-dir", "", "folder of the mesh CA (default <state-dir>/ca); Istio plug-in files (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) there are used instead of a generated root")
	cmd.Flags().DurationVar(&certTTL, "cert-ttl", 24*time.Hour, "lifetime of workload certificates (sidecars renew at half of it); seconds are fine for tests")
	cmd.Flags().StringVar(&trustDomain, "trust-domain", "cluster.local", "trust domain of workload SPIFFE IDs")
	cmd.Flags().StringVar(&rootNamespace, "root-namespace", "istio-system", "mesh root namespace (Istio's meshConfig.rootNamespace): its policies without a selector apply mesh-wide")
	cmd.Flags().BoolVar(&noAccessLog, "no-access-log", false, "do not write <state-dir>/logs/<proxy>.access.log")
	cmd.Flags().BoolVar(&sharedUser, "shared-user", false, "as root, still run sidecars and apps as skein up's user (by default each replica's sidecar and app get users of their own, so no workload can read another's credential)")
	cmd.Flags().StringSliceVar(&dropLabels, "metrics-drop-labels", nil, "standard istio_* labels every sidecar drops (cardinality)")
	cmd.Flags().StringVar(&proxyBinary, "proxy-binary", os.Getenv("SKEIN_PROXY_BINARY"), "what sidecars and gateways run: the lean skein-proxy binary at this path, or \""+local.ProxyBuiltin+"\" for `skein proxy` (default $SKEIN_PROXY_BINARY, else a skein-proxy of the same build next to skein, else `skein proxy`)")
	tr.Register(cmd.Flags())
	return cmd
}

// extractDemo writes the embedded demo into dir, replacing an older copy.
func extractDemo(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return fs.WalkDir(demo.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := demo.FS.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), b, 0o644)
	})
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
