package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/runtime/local/statedir"
)

func newStatusCmd() *cobra.Command {
	var stateDir, apiAddr, output string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show workloads, replicas and each proxy's config sync state of a running skein up (or skein control)",
		Long: `status exits 0 only when every workload replica is running and every proxy has
ACKed the newest config. With --wait it polls until that holds or the time is up.
--api asks the local API at that address (skein control's --api-address) instead of
the skein up of --state-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			deadline := time.Now().Add(wait)
			for {
				st, err := fetchStatus(ctx, stateDir, apiAddr)
				if err == nil && st.Ready || time.Now().After(deadline) || ctx.Err() != nil {
					if err != nil {
						return &exitError{code: 2, err: err}
					}
					if output == "json" {
						enc := json.NewEncoder(cmd.OutOrStdout())
						enc.SetIndent("", "  ")
						if err := enc.Encode(st); err != nil {
							return err
						}
					} else {
						printStatus(cmd.OutOrStdout(), st)
					}
					if !st.Ready {
						return &exitError{code: 1, err: errors.New("not ready: " + strings.Join(st.NotReady, "; "))}
					}
					return nil
				}
				select {
				case <-ctx.Done():
				case <-time.After(250 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", statedir.Default(), "state dir of the skein up instance")
	cmd.Flags().StringVar(&apiAddr, "api", "", "address of the local API to ask (e.g. skein control's "+defaultControlAPI+") instead of --state-dir's")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the mesh to be ready")
	return cmd
}

func fetchStatus(ctx context.Context, stateDir, apiAddr string) (api.Status, error) {
	if apiAddr != "" {
		return api.NewClient(apiAddr).Status(ctx)
	}
	inst, err := statedir.Read(stateDir)
	if err != nil {
		return api.Status{}, err
	}
	return api.NewClient(inst.API).Status(ctx)
}

func printStatus(w io.Writer, st api.Status) {
	if st.Isolation == "control" {
		fmt.Fprintf(w, "skein control: config %s (generation %d), xDS %s\n", st.ConfigDir, st.Generation, st.XDSAddress)
	} else {
		fmt.Fprintf(w, "config %s (generation %d), isolation %s, xDS %s\n", st.ConfigDir, st.Generation, st.Isolation, st.XDSAddress)
	}
	if len(st.ConfigErrors) > 0 {
		fmt.Fprintf(w, "newest edit REJECTED at %s (previous config keeps serving):\n", st.ConfigErrorAt.Format(time.RFC3339))
		for _, e := range st.ConfigErrors {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	if st.ControlPlaneError != "" {
		fmt.Fprintf(w, "control plane error: %s\n", st.ControlPlaneError)
	}
	proxies := map[string]api.Proxy{}
	for _, p := range st.Proxies {
		proxies[p.ID] = p
	}
	replicas := map[string]bool{}
	if len(st.Workloads) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REPLICA\tAPP\tPORT\tSIDECAR\tINBOUND\tADMIN\tCONFIG\tSYNC")
		for _, wl := range st.Workloads {
			for _, r := range wl.Replicas {
				replicas[r.ProxyID] = true
				p := proxies[r.ProxyID]
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ProxyID, r.State, r.Port, r.ProxyState, r.Inbound, r.Admin, p.Version, syncState(p))
			}
		}
		tw.Flush()
	}
	// Nodes that are no replica of ours: proxyless gRPC clients, proxies started by
	// hand (all of them under skein control).
	var others []api.Proxy
	for _, p := range st.Proxies {
		if !replicas[p.ID] {
			others = append(others, p)
		}
	}
	if len(others) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tCONFIG\tSYNC")
		for _, p := range others {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, p.Version, syncState(p))
		}
		tw.Flush()
	}
	printIdentities(w, st)
	if st.Ready {
		fmt.Fprintln(w, "ready")
	} else {
		fmt.Fprintln(w, "not ready:")
		for _, r := range st.NotReady {
			fmt.Fprintf(w, "  %s\n", r)
		}
	}
}

func syncState(p api.Proxy) string {
	switch {
	case !p.Connected:
		return "DISCONNECTED"
	case p.NACK != nil:
		return "NACK: " + p.NACK.Message
	case !p.InSync:
		return "STALE"
	}
	return "SYNCED"
}

// printIdentities lists each proxy's workload certificate, when the mesh has mTLS.
func printIdentities(w io.Writer, st api.Status) {
	var rows []api.Proxy
	for _, p := range st.Proxies {
		if p.SPIFFEID != "" {
			rows = append(rows, p)
		}
	}
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROXY\tSPIFFE ID\tCERT EXPIRES")
	for _, p := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s (in %s)\n", p.ID, p.SPIFFEID, p.CertExpiry.Format(time.RFC3339), time.Until(p.CertExpiry).Round(time.Second))
	}
	tw.Flush()
}
