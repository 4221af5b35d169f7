package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/runtime/local/statedir"
)

func newCACmd() *cobra.Command {
	var stateDir, apiAddr, output string
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Inspect and rotate the mesh CA of a running skein up; issue credentials for proxies started by hand (skein control)",
		Long: `ca shows the mesh CA's trusted roots (skein ca status) and rotates the root with an
overlap: "skein ca rotate-root" adds a new root to every proxy's and workload's trust
bundle, waits until every proxy has it, then makes it sign; certificates renew onto it
at their half-life. "skein ca drop-previous-roots" ends the overlap once no certificate
from the old root can still be valid (or earlier with --force, breaking those).
"skein ca credential --api ADDR --proxy-id ID" asks a skein control for the bootstrap
credential of a proxy you start yourself (skein proxy --ca-token-file).`,
	}
	cmd.PersistentFlags().StringVar(&stateDir, "state-dir", statedir.Default(), "state dir of the skein up instance")
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.PersistentFlags().StringVar(&apiAddr, "api", "", "address of the local API to ask (e.g. skein control's "+defaultControlAPI+") instead of --state-dir's")
	client := func() (*api.Client, error) {
		if apiAddr != "" {
			return api.NewClient(apiAddr), nil
		}
		inst, err := statedir.Read(stateDir)
		if err != nil {
			return nil, err
		}
		return api.NewClient(inst.API), nil
	}
	show := func(w io.Writer, st api.CAStatus) error {
		if output == "json" {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		printCA(w, st)
		return nil
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the trust domain and the trusted roots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			st, err := c.CAStatus(cmd.Context())
			if err != nil {
				return err
			}
			return show(cmd.OutOrStdout(), st)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate-root",
		Short: "Rotate the root with overlap: distribute the new root, then sign with it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			st, err := c.RotateRoot(cmd.Context())
			if err != nil {
				return err
			}
			return show(cmd.OutOrStdout(), st)
		},
	})
	var force bool
	drop := &cobra.Command{
		Use:   "drop-previous-roots",
		Short: "End the overlap of a root rotation: trust only the signing root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			st, err := c.DropPreviousRoots(cmd.Context(), force)
			if err != nil {
				return err
			}
			return show(cmd.OutOrStdout(), st)
		},
	}
	drop.Flags().BoolVar(&force, "force", false, "drop even though certificates from a previous root may still be valid (they stop verifying)")
	cmd.AddCommand(drop)

	var req api.CredentialRequest
	var tokenFile string
	cred := &cobra.Command{
		Use:   "credential --proxy-id ID [--namespace NS] [--service-account SA] [--token-file FILE]",
		Short: "Issue the bootstrap credential of a proxy started by hand (skein control)",
		Long: `credential asks the control plane for a token bound to the identity
spiffe://<trust domain>/ns/NS/sa/SA and to the proxy's xDS node id; run the proxy with
--ca-token-file FILE and the same node id to get its workload certificate. The file
is written 0600; without --token-file the token goes to stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			got, err := c.IssueCredential(cmd.Context(), req)
			if err != nil {
				return err
			}
			if tokenFile == "" {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), got.Token)
				return err
			}
			if err := os.WriteFile(tokenFile, []byte(got.Token+"\n"), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "credential for %s, proxy %s, written to %s\n", got.SPIFFEID, got.ProxyID, tokenFile)
			return nil
		},
	}
	cred.Flags().StringVar(&req.ProxyID, "proxy-id", "", "the proxy's xDS node id (its model.Proxy id), required")
	cred.Flags().StringVar(&req.Namespace, "namespace", "default", "namespace of the identity")
	cred.Flags().StringVar(&req.ServiceAccount, "service-account", "default", "service account of the identity")
	cred.Flags().StringVar(&tokenFile, "token-file", "", "file to write the token to (0600); default stdout")
	cmd.AddCommand(cred)
	return cmd
}

func printCA(w io.Writer, st api.CAStatus) {
	kind := "generated root"
	if st.Plugin {
		kind = "plug-in intermediate"
	}
	fmt.Fprintf(w, "trust domain %s, %s, workload certificates live %s\n", st.TrustDomain, kind, st.WorkloadTTL)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tSERIAL\tSUBJECT\tNOT AFTER")
	for _, r := range st.Roots {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Role, r.Serial, r.Subject, r.NotAfter.Format(time.RFC3339))
	}
	tw.Flush()
	if !st.PreviousRootsValidUntil.IsZero() {
		fmt.Fprintf(w, "certificates from previous roots may be valid until %s\n", st.PreviousRootsValidUntil.Format(time.RFC3339))
	}
}
