# Orchestrator Edge. `make run` starts the appliance in dev mode on SQLite in
# ./data; `make test` is everything CI runs (.ci/run installs the system
# packages first).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO      ?= go
BIN     := bin/orchestrator
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
PKGS    := ./...

.PHONY: build run test lint clean kube-assets

## build: the static binary bin/orchestrator (no cgo)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/orchestrator

## run: the appliance in dev mode, data in ./data
run: build
	./$(BIN) serve --dev --data-dir ./data

## test: lint, then every test with a short summary. Needs PostgreSQL 15 and
## etcd (Debian packages; .ci/run installs them); builds kube-apiserver once.
test: lint kube-assets
	KUBEBUILDER_ASSETS="$$(hack/kube-apiserver.sh)" \
	ORCHESTRATOR_TEST_REQUIRE_POSTGRES=1 ORCHESTRATOR_TEST_REQUIRE_KUBE=1 \
		$(GO) test -race -count=1 -timeout 30m -json $(PKGS) 2>&1 | $(GO) run ./internal/testsum

## kube-assets: build kube-apiserver into ~/.cache/orchestrator-edge (once) for the integration tests
kube-assets:
	@hack/kube-apiserver.sh >/dev/null

## lint: gofmt, go vet, staticcheck
lint:
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## clean: remove the binary and the dev data directory
clean:
	rm -rf bin data
