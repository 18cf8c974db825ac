# Parley. `make` lists the targets.
GO ?= go
BIN := bin
# bash, so that recipes can set -o pipefail.
SHELL := /bin/bash

.PHONY: help build run test lint fmt bench soak fuzz web screenshots
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

build: ## build bin/parleyd and bin/parley (the CLI)
	$(GO) build -o $(BIN)/parleyd ./cmd/parleyd
	$(GO) build -o $(BIN)/parley ./cmd/parley

run: build ## start parleyd on the embedded store in ./data with the web client and its development sign-in at http://localhost:8080/ (Ctrl-C stops it)
	PARLEY_DEV_LOGIN=$${PARLEY_DEV_LOGIN:-true} ./$(BIN)/parleyd

test: build ## run every test: unit, end-to-end, browser, faults, race, fuzz (bounded), mosquitto example, OpenAPI clients, web build (PostgreSQL, Chromium and npm needed; builds SeaweedFS into bin/weed for the S3 tests; see README)
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	$(GO) vet ./...
	bash scripts/web.sh check
	$(GO) build -o $(BIN)/testsummary ./scripts/testsummary
	bash scripts/install-weed.sh
	@echo "$(GO) test -count=1 -timeout 30m ./..."
	@set -o pipefail; $(GO) test -json -count=1 -timeout 30m ./... | ./$(BIN)/testsummary
	@echo "$(GO) test -count=1 -race -timeout 20m ./broker/... ./hooks/... ./internal/... ./clients/..."
	@set -o pipefail; $(GO) test -json -count=1 -race -timeout 20m ./broker/... ./hooks/... ./internal/... ./clients/... | ./$(BIN)/testsummary
	FUZZTIME=$${FUZZTIME:-5s} bash scripts/fuzz.sh
	bash scripts/mosquitto-example.sh
	bash scripts/paho-suite.sh
	bash scripts/openapi-ts.sh

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	$(GO) vet ./...

fmt: ## apply gofmt
	gofmt -w .

bench: ## load test: Parley (SQLite, PostgreSQL) against plain mochi-mqtt, ~1 min (PostgreSQL binaries needed)
	$(GO) build -o $(BIN)/parley-bench ./cmd/parley-bench
	./$(BIN)/parley-bench --store sqlite,postgres --baseline plain --users 1000 --group 0 --qos 1 --size 200 --duration 15s $(BENCHFLAGS)

soak: ## long fault suite: kill -9, database outages, overload (PostgreSQL binaries needed), up to an hour
	PARLEY_FAULT_SCALE=long $(GO) test -count=1 -timeout 60m -v ./faults/

web: ## rebuild the web client (web/src -> web/dist, committed) with the pinned esbuild and TypeScript (npm needed)
	bash scripts/web.sh

screenshots: ## refresh the screenshots of docs/web.md (docs/web/*.png) from the browser tests (Chromium needed)
	$(GO) test -count=1 -run TestBrowser ./web -screenshots

fuzz: ## run every fuzz target for FUZZTIME each (default 10s)
	bash scripts/fuzz.sh
