#!/usr/bin/env bash
# make bench / make bench-quick: fortio load through four topologies side by side
# (direct, two skein sidecars, an nginx pair and an HAProxy pair with mutual TLS).
# QUICK=1: 1,000 RPS and max, 10 s per run (a few minutes). Full: 1,000, 4,000 and max,
# 30 s per run. Extra arguments go to the harness (go run ./bench/harness -h).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"
if ! command -v fortio >/dev/null 2>&1 || [ "$(fortio version 2>/dev/null)" != "1.68.2" ]; then
  # v1.68.2 is the newest fortio that builds from the module proxy here (see FACTS).
  go install fortio.org/fortio@v1.68.2
fi
# skein up runs the lean sidecar binary bin/skein-proxy found next to bin/skein.
# grpcnotrace: see the Makefile.
go build -tags grpcnotrace -o bin/ ./cmd/skein ./cmd/skein-proxy
go build -o bin/bench-harness ./bench/harness
exec bin/bench-harness -skein bin/skein -fortio "$(command -v fortio)" ${QUICK:+-quick} "$@"
