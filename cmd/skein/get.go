package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/runtime/local/statedir"
)

// getKinds maps what a user may type (kubectl's names, plurals and short names) to
// the kinds `skein get` shows.
var getKinds = map[string]string{
	"gatewayclass": "GatewayClass", "gatewayclasses": "GatewayClass", "gc": "GatewayClass",
	"gateway": "Gateway", "gateways": "Gateway", "gtw": "Gateway",
	"httproute": "HTTPRoute", "httproutes": "HTTPRoute",
	"grpcroute": "GRPCRoute", "grpcroutes": "GRPCRoute",
	"tlsroute": "TLSRoute", "tlsroutes": "TLSRoute",
	"tcproute": "TCPRoute", "tcproutes": "TCPRoute",
	"referencegrant": "ReferenceGrant", "referencegrants": "ReferenceGrant", "refgrant": "ReferenceGrant",
}

func newGetCmd() *cobra.Command {
	var stateDir, output, namespace string
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Show Gateway API objects of a running skein up with the status skein computed",
		Long: `get shows objects the way kubectl get does: a table, or with -o yaml / -o json the
object as written plus its status (conditions Accepted, ResolvedRefs, Programmed with
the Gateway API's reasons, listeners, attached routes and the gateway's addresses).
KIND is gatewayclass, gateway (gtw), httproute, grpcroute, tlsroute, tcproute or
referencegrant (plurals work too).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, ok := getKinds[strings.ToLower(args[0])]
			if !ok {
				return fmt.Errorf("unknown kind %q: want one of gatewayclass, gateway, httproute, grpcroute, tlsroute, tcproute, referencegrant", args[0])
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			ns := namespace
			if all || kind == "GatewayClass" {
				ns = ""
			}
			inst, err := statedir.Read(stateDir)
			if err != nil {
				return err
			}
			objs, err := api.NewClient(inst.API).Objects(cmd.Context(), kind, ns, name)
			if err != nil {
				return err
			}
			if name != "" && len(objs) == 0 {
				return fmt.Errorf("%s %q not found in namespace %s", kind, name, namespace)
			}
			return printObjects(cmd.OutOrStdout(), kind, objs, output)
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", statedir.Default(), "state dir of the skein up instance")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, yaml or json")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every namespace")
	return cmd
}

func printObjects(w io.Writer, kind string, objs []*model.Object, output string) error {
	switch output {
	case "yaml":
		var buf bytes.Buffer
		for i, o := range objs {
			if i > 0 {
				buf.WriteString("---\n")
			}
			enc := yaml.NewEncoder(&buf)
			enc.SetIndent(2)
			if err := enc.Encode(o.Manifest); err != nil {
				return err
			}
			enc.Close()
		}
		_, err := w.Write(buf.Bytes())
		return err
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if len(objs) == 1 {
			return enc.Encode(objs[0].Manifest)
		}
		items := make([]map[string]any, 0, len(objs))
		for _, o := range objs {
			items = append(items, o.Manifest)
		}
		return enc.Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	case "table", "":
	default:
		return fmt.Errorf("-o %q: want table, yaml or json", output)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	defer tw.Flush()
	switch kind {
	case "GatewayClass":
		fmt.Fprintln(tw, "NAME\tCONTROLLER\tACCEPTED")
		for _, o := range objs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", o.Name.Name, str(o.Manifest, "spec", "controllerName"), condition(o.Manifest, "Accepted"))
		}
	case "Gateway":
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tCLASS\tADDRESS\tPROGRAMMED")
		for _, o := range objs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.Name.Namespace, o.Name.Name, str(o.Manifest, "spec", "gatewayClassName"), address(o.Manifest), condition(o.Manifest, "Programmed"))
		}
	default:
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tHOSTNAMES\tPARENTS ACCEPTED")
		for _, o := range objs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Name.Namespace, o.Name.Name, hostnames(o.Manifest), parentsAccepted(o.Manifest))
		}
	}
	return nil
}

func str(m map[string]any, keys ...string) string {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = mm[k]
	}
	s, _ := v.(string)
	return s
}

// condition is the status of a top-level condition, "Unknown" when absent (an object
// of a class skein does not control).
func condition(m map[string]any, t string) string {
	st, _ := m["status"].(map[string]any)
	list, _ := st["conditions"].([]any)
	for _, c := range list {
		cm, _ := c.(map[string]any)
		if cm["type"] == t {
			return fmt.Sprint(cm["status"])
		}
	}
	return "Unknown"
}

func address(m map[string]any) string {
	st, _ := m["status"].(map[string]any)
	list, _ := st["addresses"].([]any)
	var out []string
	for _, a := range list {
		am, _ := a.(map[string]any)
		out = append(out, fmt.Sprint(am["value"]))
	}
	return strings.Join(out, ",")
}

func hostnames(m map[string]any) string {
	spec, _ := m["spec"].(map[string]any)
	list, _ := spec["hostnames"].([]any)
	var out []string
	for _, h := range list {
		out = append(out, fmt.Sprint(h))
	}
	if len(out) == 0 {
		return "*"
	}
	return strings.Join(out, ",")
}

// parentsAccepted summarises status.parents as "n/m": parents that accepted the route.
func parentsAccepted(m map[string]any) string {
	st, _ := m["status"].(map[string]any)
	parents, _ := st["parents"].([]any)
	ok := 0
	var reasons []string
	for _, p := range parents {
		pm, _ := p.(map[string]any)
		conds, _ := pm["conditions"].([]any)
		for _, c := range conds {
			cm, _ := c.(map[string]any)
			if cm["type"] == "Accepted" {
				if cm["status"] == "True" {
					ok++
				} else {
					reasons = append(reasons, fmt.Sprint(cm["reason"]))
				}
			}
		}
	}
	sort.Strings(reasons)
	s := fmt.Sprintf("%d/%d", ok, len(parents))
	if len(reasons) > 0 {
		s += " (" + strings.Join(reasons, ",") + ")"
	}
	return s
}
