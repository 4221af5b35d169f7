package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"skein.dev/skein/internal/echo"
)

// echoFlags are the flags of `skein echo`.
type echoFlags struct {
	port      int
	address   string
	opts      echo.Options
	calls     []string
	propagate []string
	echoEnv   []string
	tcpEcho   bool
	tlsCert   string
	tlsKey    string
	greeting  string
	load      string
	rps       float64
	count     int
	headers   []string
	logLevel  string
}

func newEchoCmd() *cobra.Command {
	var f echoFlags
	cmd := &cobra.Command{
		Use:   "echo",
		Short: "Demo and test workload: HTTP/1.1, h2c and gRPC echo, TCP echo, or a load client",
		Long: `skein echo answers every HTTP request with JSON describing the workload replica
(SKEIN_WORKLOAD, SKEIN_NAMESPACE, SKEIN_REPLICA) and the request it saw. The same port
serves h2c and gRPC (grpc.health.v1.Health and skein.echo.v1.Echo). A request may ask
for a status or a latency with ?status=503&latency=20ms or the x-echo-status and
x-echo-latency headers. /healthz answers 200 and /size?bytes=N answers N bytes.

With --call, every request first calls each URL (through HTTP_PROXY when set) and
includes the answers; a failing upstream makes the answer 502 unless --status is set.
With --tcp-echo it echoes raw TCP instead; with --load it is a client that sends
steady requests to a URL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runEcho(cmd, f) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.port, "port", 0, "port to listen on (default $PORT, else 8080)")
	fl.StringVar(&f.address, "address", "127.0.0.1", "address to listen on (0.0.0.0 for all)")
	fl.DurationVar(&f.opts.Latency, "latency", 0, "delay added before every answer")
	fl.IntVar(&f.opts.Status, "status", 0, "fixed status of every answer (default 200)")
	fl.StringArrayVar(&f.calls, "call", nil, "URL to call for every request (repeatable)")
	fl.StringSliceVar(&f.propagate, "propagate", nil, "extra headers copied to --call requests (tracing headers always are)")
	fl.StringSliceVar(&f.echoEnv, "echo-env", nil, "environment variables to echo under \"env\"")
	fl.BoolVar(&f.tcpEcho, "tcp-echo", false, "echo raw TCP instead of serving HTTP")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS (HTTP/1.1) with this PEM certificate chain file (needs --tls-key)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "the PEM private key file of --tls-cert")
	fl.StringVar(&f.greeting, "tcp-greeting", "", "with --tcp-echo: send this line first on every connection, as a server-first protocol (SMTP, MySQL) does")
	fl.StringVar(&f.load, "load", "", "act as a load client sending GET requests to this URL")
	fl.Float64Var(&f.rps, "rps", 5, "with --load: requests per second")
	fl.IntVar(&f.count, "count", 0, "with --load: stop after this many requests (0: never)")
	fl.StringArrayVar(&f.headers, "header", nil, "with --load: header to send, \"Name: value\" (repeatable)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error (debug logs every request)")
	return cmd
}

func runEcho(cmd *cobra.Command, f echoFlags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	ctx := cmd.Context()

	if f.load != "" {
		header := http.Header{}
		for _, h := range f.headers {
			name, value, ok := strings.Cut(h, ":")
			if !ok {
				return fmt.Errorf("--header %q: want \"Name: value\"", h)
			}
			header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
		_, err := echo.RunLoad(ctx, echo.LoadOptions{
			URL: f.load, RPS: f.rps, Count: f.count, Header: header, Logger: log,
		})
		return err
	}

	port := f.port
	if port == 0 {
		port = 8080
		if p := os.Getenv("PORT"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil {
				return fmt.Errorf("PORT=%q: %w", p, err)
			}
			port = n
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(f.address, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	if f.tcpEcho {
		log.Info("tcp echo listening", "addr", ln.Addr())
		greeting := f.greeting
		if greeting != "" {
			greeting += "\r\n"
		}
		return echo.ServeTCPEchoGreeting(ctx, ln, greeting, log)
	}

	if f.tlsCert != "" || f.tlsKey != "" {
		// A TLS server, e.g. the backend of a TLS passthrough route: the proxies in
		// between carry its bytes without reading them.
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	}
	opts := f.opts
	opts.Identity, err = echo.IdentityFromEnv(os.Getenv)
	if err != nil {
		ln.Close()
		return err
	}
	opts.Calls, opts.Propagate, opts.Logger = f.calls, f.propagate, log
	if len(f.echoEnv) > 0 {
		opts.Env = map[string]string{}
		for _, name := range f.echoEnv {
			opts.Env[name] = os.Getenv(name)
		}
	}
	log.Info("echo listening", "addr", ln.Addr(), "workload", opts.Identity.Workload,
		"replica", opts.Identity.Replica, "calls", opts.Calls)
	return echo.Serve(ctx, ln, opts)
}
