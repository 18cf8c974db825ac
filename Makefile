# Parley. `make` lists the targets.
GO ?= go
BIN := bin

.PHONY: help build run test lint fmt
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

build: ## build bin/parleyd
	$(GO) build -o $(BIN)/parleyd ./cmd/parleyd

run: build ## start parleyd on the embedded store in ./data (Ctrl-C stops it)
	./$(BIN)/parleyd

test: build ## run every test (PostgreSQL binaries needed; see README)
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -timeout 20m ./broker/... ./hooks/...
	bash scripts/mosquitto-example.sh

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	$(GO) vet ./...

fmt: ## apply gofmt
	gofmt -w .
