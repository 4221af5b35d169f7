package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// A pair of third-party proxies in the sidecar shape: fortio → outbound proxy
// (plaintext on loopback) → inbound proxy (mutual TLS between the two) → the same fortio
// server the skein mesh uses. Each proxy is its own foreground process tree, configured
// by a file the harness writes into its temp dir, on loopback ports (never a system
// service).
type proxyPair struct {
	kind   string         // "nginx" or "haproxy"
	out    map[string]int // protocol -> outbound proxy port (fortio's target)
	procs  []*exec.Cmd    // outbound, inbound
	logs   []*bytes.Buffer
	config []string
}

// pairPorts are the loopback ports of a pair.
type pairPorts struct {
	outHTTP, outGRPC, inHTTP, inGRPC int
	appHTTP, appGRPC                 int
}

func newPairPorts(app map[string]int) (pairPorts, error) {
	p := pairPorts{appHTTP: app[protoHTTP], appGRPC: app[protoGRPC]}
	for _, dst := range []*int{&p.outHTTP, &p.outGRPC, &p.inHTTP, &p.inGRPC} {
		port, err := freePort()
		if err != nil {
			return p, err
		}
		*dst = port
	}
	return p, nil
}

// ensurePackage installs a Debian package if its binary is missing.
func ensurePackage(ctx context.Context, binary string, pkgs ...string) (string, error) {
	if path, err := exec.LookPath(binary); err == nil {
		return path, nil
	}
	install := func() error {
		args := append([]string{"install", "-y", "-qq"}, pkgs...)
		out, err := exec.CommandContext(ctx, "apt-get", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install %v: %v\n%s", pkgs, err, out)
		}
		return nil
	}
	if err := install(); err != nil {
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return "", fmt.Errorf("apt-get update: %v\n%s", uerr, out)
		}
		if err := install(); err != nil {
			return "", err
		}
	}
	return exec.LookPath(binary)
}

const nginxMain = `worker_processes %d;
pid %s;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[3]s/body;
  proxy_temp_path %[3]s/proxy;
  fastcgi_temp_path %[3]s/fastcgi;
  uwsgi_temp_path %[3]s/uwsgi;
  scgi_temp_path %[3]s/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_max_body_size 1m;
%s
}
`

func nginxOutbound(p pairPorts, c certFiles) string {
	return fmt.Sprintf(`  upstream inbound_http { server 127.0.0.1:%d; keepalive 64; keepalive_requests 10000000; }
  upstream inbound_grpc { server 127.0.0.1:%d; keepalive 64; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass https://inbound_http;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate %[4]s;
      proxy_ssl_certificate_key %[5]s;
      proxy_ssl_trusted_certificate %[6]s;
      proxy_ssl_verify on;
      proxy_ssl_name %[7]s;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.3;
    }
  }
  server {
    listen 127.0.0.1:%[8]d http2;
    location / {
      grpc_pass grpcs://inbound_grpc;
      grpc_ssl_certificate %[4]s;
      grpc_ssl_certificate_key %[5]s;
      grpc_ssl_trusted_certificate %[6]s;
      grpc_ssl_verify on;
      grpc_ssl_name %[7]s;
      grpc_ssl_server_name on;
      grpc_ssl_session_reuse on;
      grpc_ssl_protocols TLSv1.3;
    }
  }`, p.inHTTP, p.inGRPC, p.outHTTP, c.ClientCert, c.ClientKey, c.CA, serverName, p.outGRPC)
}

func nginxInbound(p pairPorts, c certFiles) string {
	return fmt.Sprintf(`  upstream app_http { server 127.0.0.1:%d; keepalive 64; keepalive_requests 10000000; }
  upstream app_grpc { server 127.0.0.1:%d; keepalive 64; keepalive_requests 10000000; }
  ssl_certificate %[3]s;
  ssl_certificate_key %[4]s;
  ssl_client_certificate %[5]s;
  ssl_verify_client on;
  ssl_protocols TLSv1.3;
  server {
    listen 127.0.0.1:%[6]d ssl;
    location / {
      proxy_pass http://app_http;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:%[7]d ssl http2;
    location / { grpc_pass grpc://app_grpc; }
  }`, p.appHTTP, p.appGRPC, c.ServerCert, c.ServerKey, c.CA, p.inHTTP, p.inGRPC)
}

const haproxyGlobal = `global
  nbthread %d
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
`

func haproxyOutbound(p pairPorts, c certFiles) string {
	tls := fmt.Sprintf("ssl crt %s ca-file %s verify required verifyhost %s sni str(%[3]s)", c.ClientBundle, c.CA, serverName)
	return fmt.Sprintf(`frontend out_http
  bind 127.0.0.1:%d
  default_backend out_http
backend out_http
  server inbound 127.0.0.1:%d %s alpn http/1.1
frontend out_grpc
  bind 127.0.0.1:%d proto h2
  default_backend out_grpc
backend out_grpc
  server inbound 127.0.0.1:%d %s alpn h2
`, p.outHTTP, p.inHTTP, tls, p.outGRPC, p.inGRPC, tls)
}

func haproxyInbound(p pairPorts, c certFiles) string {
	tls := fmt.Sprintf("ssl crt %s ca-file %s verify required ssl-min-ver TLSv1.3", c.ServerBundle, c.CA)
	return fmt.Sprintf(`frontend in_http
  bind 127.0.0.1:%d %s alpn http/1.1
  default_backend app_http
backend app_http
  server app 127.0.0.1:%d
frontend in_grpc
  bind 127.0.0.1:%d %s alpn h2
  default_backend app_grpc
backend app_grpc
  server app 127.0.0.1:%d proto h2
`, p.inHTTP, tls, p.appHTTP, p.inGRPC, tls, p.appGRPC)
}

// startPair writes the configs and starts the inbound then the outbound proxy.
func startPair(ctx context.Context, kind, dir string, app map[string]int, certs certFiles, workers int) (*proxyPair, error) {
	ports, err := newPairPorts(app)
	if err != nil {
		return nil, err
	}
	pp := &proxyPair{kind: kind, out: map[string]int{protoHTTP: ports.outHTTP, protoGRPC: ports.outGRPC}}
	var bin string
	switch kind {
	case "nginx":
		bin, err = ensurePackage(ctx, "nginx", "nginx-light")
	case "haproxy":
		bin, err = ensurePackage(ctx, "haproxy", "haproxy")
	default:
		err = fmt.Errorf("unknown proxy %q", kind)
	}
	if err != nil {
		return nil, err
	}
	for _, side := range []string{"inbound", "outbound"} {
		sdir := filepath.Join(dir, kind+"-"+side)
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			return nil, err
		}
		var conf string
		var args []string
		switch kind {
		case "nginx":
			body := nginxInbound(ports, certs)
			if side == "outbound" {
				body = nginxOutbound(ports, certs)
			}
			conf = fmt.Sprintf(nginxMain, workers, filepath.Join(sdir, "nginx.pid"), sdir, body)
			args = []string{"-p", sdir, "-e", filepath.Join(sdir, "error.log"), "-c", filepath.Join(sdir, "proxy.conf"), "-g", "daemon off;"}
		case "haproxy":
			body := haproxyInbound(ports, certs)
			if side == "outbound" {
				body = haproxyOutbound(ports, certs)
			}
			conf = fmt.Sprintf(haproxyGlobal, workers) + body
			args = []string{"-db", "-f", filepath.Join(sdir, "proxy.conf")}
		}
		path := filepath.Join(sdir, "proxy.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		pp.config = append(pp.config, path)
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			pp.stop()
			return nil, fmt.Errorf("%s %s: %w", kind, side, err)
		}
		pp.procs = append(pp.procs, cmd)
		pp.logs = append(pp.logs, &out)
		port := ports.inHTTP
		if side == "outbound" {
			port = ports.outHTTP
		}
		if err := waitPort(ctx, port, 10*time.Second); err != nil {
			pp.stop()
			return nil, fmt.Errorf("%s %s did not start: %w\n%s", kind, side, err, out.String())
		}
	}
	// procs were started inbound first; report outbound first, as for skein.
	pp.procs[0], pp.procs[1] = pp.procs[1], pp.procs[0]
	pp.logs[0], pp.logs[1] = pp.logs[1], pp.logs[0]
	return pp, nil
}

func (pp *proxyPair) roots() []int {
	var out []int
	for _, c := range pp.procs {
		out = append(out, c.Process.Pid)
	}
	return out
}

func (pp *proxyPair) stop() {
	for _, c := range pp.procs {
		if c.Process == nil {
			continue
		}
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

func waitPort(ctx context.Context, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
