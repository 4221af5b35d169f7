GO ?= go
BIN := bin/skein
# grpcnotrace drops grpc's golang.org/x/net/trace and with it html/template, whose
# reflection keeps every exported method of every type alive (all of go-control-plane's
# generated validation code): the sidecar binary shrinks from 42 to 27 MB, and with it
# what each sidecar maps (docs/BENCHMARKS.md, "this round: memory").
GOTAGS ?= grpcnotrace

.PHONY: build test test-short bench bench-quick bench-micro bench-cp lint demo ui ui-deps

# skein and the lean sidecar binary skein-proxy next to it (skein up runs it).
build:
	$(GO) build -tags $(GOTAGS) -o bin/ ./cmd/skein ./cmd/skein-proxy

# The test command of README.md and CI: every package with the race detector.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

test-short:
	$(GO) test -count=1 -short ./...

demo: build
	./$(BIN) up

# Benchmarks (docs/BENCHMARKS.md). None of them runs in `make test`.
# bench: the fortio harness, full mode (1,000 / 4,000 RPS and max, HTTP/1.1 and gRPC,
# direct vs skein sidecars vs nginx and HAProxy pairs; ~15 min), then the microbenchmarks.
bench: bench-micro
	./bench/run.sh

# bench-quick: the same harness at 1,000 RPS and max, 10 s runs (a few minutes).
bench-quick:
	QUICK=1 ./bench/run.sh

# bench-micro: Go benchmarks of the proxy's request path and of translation at scale,
# with allocations per op.
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/proxy/... ./internal/xds/translate/

# bench-cp: control-plane scale (1,000 and 10,000 services, 50,000 endpoints, 1,000 ADS
# clients), with and without Sidecar scoping. QUICK=1 runs the 1,000-service case only.
bench-cp:
	$(GO) run ./bench/cpscale $${QUICK:+-quick}

# The dashboard front end (ui/, Vite + Preact). Its built files are committed under
# internal/dashboard/dist, so `go build` needs no npm; rebuild them after editing ui/.
ui-deps:
	cd ui && npm ci --no-audit --no-fund

ui: ui-deps
	cd ui && npm run build
