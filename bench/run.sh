#!/usr/bin/env bash
# make bench / make bench-quick: fortio load, direct vs through two skein sidecars.
# QUICK=1 runs 1,000 RPS for 15 s; the full run adds 4,000 RPS and max rate, 30 s each.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"
if ! command -v fortio >/dev/null 2>&1; then
  # v1.68.2 is the newest fortio that builds from the module proxy here (see FACTS).
  go install fortio.org/fortio@v1.68.2
fi
[ -x bin/skein ] || go build -o bin/skein ./cmd/skein
exec go run ./bench/harness -skein bin/skein -fortio "$(command -v fortio)" ${QUICK:+-quick} "$@"
