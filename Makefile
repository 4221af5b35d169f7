GO ?= go
BIN := bin/skein

.PHONY: build test test-short bench bench-quick lint demo ui ui-deps

build:
	$(GO) build -o $(BIN) ./cmd/skein

# The test command of README.md and CI: every package with the race detector.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

test-short:
	$(GO) test -count=1 -short ./...

demo: build
	./$(BIN) up

# Benchmarks: Go microbenchmarks and the fortio harness (docs/BENCHMARKS.md).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/proxy/...
	./bench/run.sh

bench-quick: build
	QUICK=1 ./bench/run.sh

# The dashboard front end (ui/, Vite + Preact). Its built files are committed under
# internal/dashboard/dist, so `go build` needs no npm; rebuild them after editing ui/.
ui-deps:
	cd ui && npm ci --no-audit --no-fund

ui: ui-deps
	cd ui && npm run build
