package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/proxy"
)

func newProxyCmd() *cobra.Command {
	var (
		xdsAddress, nodeJSON, nodeFile, adminAddress, logLevel string
		pprof                                                  bool
	)
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the skein proxy (sidecar or gateway), configured only by xDS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			node, err := readNode(nodeJSON, nodeFile)
			if err != nil {
				return err
			}
			return proxy.Run(cmd.Context(), proxy.Options{
				XDSAddress:   xdsAddress,
				Node:         node,
				AdminAddress: adminAddress,
				Logger:       log.With("proxy", node.ID),
				Pprof:        pprof,
				OnAdminListening: func(addr string) {
					log.Info("admin listening", "address", addr)
				},
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&xdsAddress, "xds-address", "127.0.0.1:15010", "host:port of the control plane's ADS server")
	f.StringVar(&nodeJSON, "node-json", "", "the proxy's identity as model.Proxy JSON")
	f.StringVar(&nodeFile, "node-file", "", "file holding the proxy's identity as model.Proxy JSON")
	f.StringVar(&adminAddress, "admin-address", "127.0.0.1:15000", "address of the admin server (/ready, /config_dump, /stats/prometheus)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&pprof, "pprof", os.Getenv("SKEIN_PROXY_PPROF") != "", "serve Go's profiler at /debug/pprof/ on the admin address (default on when $SKEIN_PROXY_PPROF is set, which sidecars started by skein up inherit)")
	cmd.MarkFlagsMutuallyExclusive("node-json", "node-file")
	return cmd
}

func readNode(nodeJSON, nodeFile string) (*model.Proxy, error) {
	raw := []byte(nodeJSON)
	if nodeFile != "" {
		var err error
		if raw, err = os.ReadFile(nodeFile); err != nil {
			return nil, fmt.Errorf("--node-file: %w", err)
		}
	}
	if len(raw) == 0 {
		return nil, errors.New("one of --node-json or --node-file is required")
	}
	var node model.Proxy
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&node); err != nil {
		return nil, fmt.Errorf("node JSON: %w", err)
	}
	if node.ID == "" {
		return nil, errors.New("node JSON: id is required")
	}
	return &node, nil
}
