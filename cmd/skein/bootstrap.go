package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/runtime/local/statedir"
)

func newBootstrapCmd() *cobra.Command {
	var stateDir, xdsAddr, nodeID, output, region, zone string
	var grpcMode bool
	cmd := &cobra.Command{
		Use:   "bootstrap --grpc WORKLOAD[.NAMESPACE]",
		Short: "Write an xDS bootstrap for a proxyless gRPC client (grpc-go's xds:/// resolver)",
		Long: `bootstrap writes the JSON that grpc-go reads from $GRPC_XDS_BOOTSTRAP: the control
plane of the running skein up (or --xds-address, e.g. a skein control's), and a node identity for WORKLOAD. A client
built with google.golang.org/grpc/xds and dialing
xds:///catalog.default.svc.cluster.local:9090 then gets the routes, weights and faults
of the VirtualServices for catalog from skein, without a sidecar.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !grpcMode {
				return &exitError{code: 2, err: errors.New("bootstrap: only --grpc is supported (a sidecar gets its bootstrap from skein up)")}
			}
			if xdsAddr == "" {
				inst, err := statedir.Read(stateDir)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%w; or give the control plane with --xds-address", err)}
				}
				xdsAddr = inst.XDS
			}
			name, ns, _ := strings.Cut(args[0], ".")
			if ns == "" {
				ns = "default"
			}
			if nodeID == "" {
				var b [4]byte
				_, _ = rand.Read(b[:])
				nodeID = fmt.Sprintf("%s-grpc-%s.%s", name, hex.EncodeToString(b[:]), ns)
			}
			data, err := grpcBootstrap(grpcBootstrapOptions{
				XDS: xdsAddr, NodeID: nodeID, Workload: name, Namespace: ns, Region: region, Zone: zone,
			})
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			return os.WriteFile(output, data, 0o644)
		},
	}
	cmd.Flags().BoolVar(&grpcMode, "grpc", false, "write a grpc-go xDS bootstrap (required)")
	cmd.Flags().StringVar(&stateDir, "state-dir", statedir.Default(), "state dir of the skein up instance whose control plane to use")
	cmd.Flags().StringVar(&xdsAddr, "xds-address", "", "control plane address (host:port, e.g. skein control's "+defaultControlXDS+") instead of the running skein up's")
	cmd.Flags().StringVar(&xdsAddr, "xds", "", "same as --xds-address")
	cmd.Flags().StringVar(&nodeID, "node-id", "", "xDS node id (default <workload>-grpc-<random>.<namespace>, unique per bootstrap)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write (default stdout)")
	cmd.Flags().StringVar(&region, "region", "", "locality region of the client")
	cmd.Flags().StringVar(&zone, "zone", "", "locality zone of the client")
	return cmd
}

type grpcBootstrapOptions struct {
	XDS, NodeID, Workload, Namespace, Region, Zone string
}

// grpcBootstrap renders grpc-go's bootstrap format (gRFC A27). The node carries no
// SKEIN_PROXY metadata: the control plane treats it as a generic client and serves the
// API listeners it names (docs/XDS.md, "Proxyless gRPC"). Plaintext, as the skein
// sidecars' xDS connection on loopback.
func grpcBootstrap(o grpcBootstrapOptions) ([]byte, error) {
	type creds struct {
		Type string `json:"type"`
	}
	type server struct {
		ServerURI      string   `json:"server_uri"`
		ChannelCreds   []creds  `json:"channel_creds"`
		ServerFeatures []string `json:"server_features"`
	}
	type locality struct {
		Region string `json:"region,omitempty"`
		Zone   string `json:"zone,omitempty"`
	}
	type node struct {
		ID       string            `json:"id"`
		Cluster  string            `json:"cluster"`
		Locality *locality         `json:"locality,omitempty"`
		Metadata map[string]string `json:"metadata"`
	}
	doc := struct {
		XDSServers []server `json:"xds_servers"`
		Node       node     `json:"node"`
	}{
		XDSServers: []server{{ServerURI: o.XDS, ChannelCreds: []creds{{Type: "insecure"}}, ServerFeatures: []string{"xds_v3"}}},
		Node: node{
			ID:      o.NodeID,
			Cluster: o.Workload + "." + o.Namespace,
			// Istio's keys for the workload, so tools can tell whose client it is.
			Metadata: map[string]string{"NAMESPACE": o.Namespace, "WORKLOAD_NAME": o.Workload, "GENERATOR": "grpc"},
		},
	}
	if o.Region != "" || o.Zone != "" {
		doc.Node.Locality = &locality{Region: o.Region, Zone: o.Zone}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
