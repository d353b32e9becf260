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
CACHE   ?= $(HOME)/.cache/orchestrator-edge
HELM    := $(CACHE)/helm-v3.22.0
# The SBOM generator, pinned in hack/tools/go.mod and built once for the host
# (it then reads each platform's module graph with GOOS/GOARCH set).
CYCLONEDX := $(CACHE)/cyclonedx-gomod-$(shell sed -n 's|^\tgithub.com/CycloneDX/cyclonedx-gomod \(v[^ ]*\).*|\1|p' hack/tools/go.mod)
IMAGE   ?= incidentfox/orchestrator-edge
APP_VERSION   := $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*/\1/p' charts/orchestrator/Chart.yaml)
CHART_VERSION := $(shell sed -n 's/^version: *//p' charts/orchestrator/Chart.yaml)

.PHONY: build run test lint clean kube-assets alertmanager jaeger fuzz bench helm image sbom bundle screenshot

## build: the static binary bin/orchestrator (no cgo)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/orchestrator

## run: the appliance in dev mode, data in ./data; ORCHESTRATOR_DATA_DIR,
## ORCHESTRATOR_DEV=0 and every other variable of docs/configuration.md apply
run: build
	ORCHESTRATOR_DEV=$${ORCHESTRATOR_DEV:-1} ./$(BIN) serve

## test: lint, a short fuzz run, then every test with a short summary.
## Needs PostgreSQL 15 and etcd (Debian packages; .ci/run installs them);
## builds kube-apiserver once.
test: lint kube-assets helm alertmanager jaeger fuzz bundle
	cd hack/tools && IMAGE_ARCHIVE=$(CURDIR)/$(IMAGE_ARCHIVE) BUNDLE=$(CURDIR)/$(BUNDLE) IMAGE_REQUIRE_QEMU=1 \
		HELM=$(HELM) ORCHESTRATOR_BINARY=$(CURDIR)/$(BIN) \
		$(GO) test -count=1 -v ./... >/tmp/orchestrator-tools-test.log 2>&1 \
		|| { cat /tmp/orchestrator-tools-test.log; exit 1; }
	@grep -E '^(ok|---)|(MB compressed|answered /ready|SBOM lists|queries parsed|alerts, each firing)' /tmp/orchestrator-tools-test.log
	KUBEBUILDER_ASSETS="$$(hack/kube-apiserver.sh)" HELM=$(HELM) ALERTMANAGER="$$(hack/alertmanager.sh)" JAEGER="$$(hack/jaeger.sh)" \
	ORCHESTRATOR_TEST_REQUIRE_POSTGRES=1 ORCHESTRATOR_TEST_REQUIRE_KUBE=1 ORCHESTRATOR_TEST_REQUIRE_HELM=1 \
	ORCHESTRATOR_TEST_REQUIRE_BROWSER=1 ORCHESTRATOR_TEST_REQUIRE_ALERTMANAGER=1 ORCHESTRATOR_TEST_REQUIRE_PYTHON=1 \
	ORCHESTRATOR_TEST_REQUIRE_JAEGER=1 \
		$(GO) test -race -count=1 -timeout 30m -json $(PKGS) 2>&1 | $(GO) run ./internal/testsum

## helm: build helm v3.22.0 once into the cache (the chart tests use it)
helm: $(HELM)
$(HELM):
	@mkdir -p $(CACHE)
	cd hack/tools && CGO_ENABLED=0 $(GO) build -trimpath -o $(HELM) helm.sh/helm/v3/cmd/helm

## image: an OCI image index for linux/amd64 and linux/arm64 (static
## cross-compiled binaries), as an OCI archive, built without a Docker daemon
PLATFORMS     := amd64 arm64
IMAGE_ARCHIVE := dist/orchestrator-edge-image-$(APP_VERSION).oci.tar
BUNDLE        := dist/orchestrator-edge-bundle-$(APP_VERSION).tar.gz
image: build
	@mkdir -p dist
	@for a in $(PLATFORMS); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/linux-$$a/orchestrator ./cmd/orchestrator; \
	done
	cd hack/tools && $(GO) run ./image $(foreach a,$(PLATFORMS),--binary linux/$(a)=$(CURDIR)/bin/linux-$(a)/orchestrator) \
		--out $(CURDIR)/$(IMAGE_ARCHIVE) --tag $(IMAGE):$(APP_VERSION) --version $(VERSION)
	@ls -l $(IMAGE_ARCHIVE)

## sbom: a CycloneDX SBOM of each platform's binary's Go modules (with licenses)
sbom: $(CYCLONEDX)
	@mkdir -p dist
	@for a in $(PLATFORMS); do \
		GOOS=linux GOARCH=$$a CGO_ENABLED=0 $(CYCLONEDX) app -json -licenses -main cmd/orchestrator \
			-output dist/orchestrator-edge-sbom-$(APP_VERSION)-linux-$$a.cdx.json . >/tmp/orchestrator-sbom.log 2>&1 \
			|| { cat /tmp/orchestrator-sbom.log; exit 1; }; \
	done
$(CYCLONEDX):
	@mkdir -p $(CACHE)
	cd hack/tools && CGO_ENABLED=0 $(GO) build -trimpath -o $(CYCLONEDX) github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod

## bundle: image index + SBOMs + chart + example values + AIRGAP.md + SHA256SUMS in one archive
bundle: image sbom helm
	rm -rf dist/bundle && mkdir -p dist/bundle
	cp $(IMAGE_ARCHIVE) dist/orchestrator-edge-sbom-$(APP_VERSION)-linux-*.cdx.json dist/bundle/
	$(HELM) package charts/orchestrator -d dist/bundle >/dev/null
	cp charts/airgap/AIRGAP.md charts/airgap/values-private-registry.yaml dist/bundle/
	sed -i 's/CHART_VERSION/$(CHART_VERSION)/g; s/VERSION/$(APP_VERSION)/g' dist/bundle/AIRGAP.md
	cd dist/bundle && sha256sum $$(ls | grep -v '^SHA256SUMS$$') > SHA256SUMS
	tar -czf $(BUNDLE) -C dist/bundle .
	@ls -l $(BUNDLE)

## screenshot: refresh the README's pictures in docs/ (run detail, teams
## page, events-per-source chart), taken by the browser tests
screenshot:
	UI_SCREENSHOT=$(CURDIR)/docs/run-detail.png UI_SCREENSHOTS_DIR=$(CURDIR)/docs KUBEBUILDER_ASSETS="$$(hack/kube-apiserver.sh)" \
		$(GO) test -count=1 -run 'TestUI_InARealBrowser|TestUI_TeamsPageAndDeprovisionPlanThenConfirm|TestUI_AccessibilityAuditOfEveryPage|TestUI_ReadableAt1280|TestUI_SourcesAndFeedbackInARealBrowser' ./server/

## fuzz: each fuzz target for FUZZTIME executions (a count: Go 1.26's duration
## form can fail with no failing input, golang/go#75804); long local runs may
## still pass a duration, e.g. `make fuzz FUZZTIME=10m`. New crashers land in
## testdata/fuzz and fail the build.
## The store's target inserts every input on SQLite and a real PostgreSQL
## (fsync on both), so it runs fewer executions.
FUZZTIME ?= 100000x
STORE_FUZZTIME ?= 5000x
FUZZ_TARGETS := FuzzSlack FuzzGitHub FuzzPagerDuty FuzzIncidentIO FuzzCoralogix FuzzAlertmanager FuzzSlackInteraction FuzzConfigured FuzzConfiguredSignedOnce FuzzSourcesFile FuzzDescribe FuzzBlankToken
fuzz:
	@for f in $(FUZZ_TARGETS); do \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./server/webhook/ >/tmp/fuzz-$$f.log 2>&1 \
			|| { cat /tmp/fuzz-$$f.log; exit 1; }; \
		echo "fuzz $$f: $(FUZZTIME) ok"; \
	done
	@ORCHESTRATOR_TEST_REQUIRE_POSTGRES=1 $(GO) test -run '^$$' -fuzz '^FuzzInsertEvent$$' -fuzztime $(STORE_FUZZTIME) -fuzzminimizetime 100x \
		./store/ >/tmp/fuzz-FuzzInsertEvent.log 2>&1 || { cat /tmp/fuzz-FuzzInsertEvent.log; exit 1; }
	@echo "fuzz FuzzInsertEvent (SQLite and PostgreSQL): $(STORE_FUZZTIME) ok"
	@$(GO) test -run '^$$' -fuzz '^FuzzDecodePayload$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x \
		./store/ >/tmp/fuzz-FuzzDecodePayload.log 2>&1 || { cat /tmp/fuzz-FuzzDecodePayload.log; exit 1; }
	@echo "fuzz FuzzDecodePayload: $(FUZZTIME) ok"
	@$(GO) test -run '^$$' -fuzz '^FuzzCredentialShaped$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x \
		./server/ingest/ >/tmp/fuzz-FuzzCredentialShaped.log 2>&1 || { cat /tmp/fuzz-FuzzCredentialShaped.log; exit 1; }
	@echo "fuzz FuzzCredentialShaped: $(FUZZTIME) ok"
	@$(GO) test -run '^$$' -fuzz '^FuzzSSE$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x \
		./server/peers/ >/tmp/fuzz-FuzzSSE.log 2>&1 || { cat /tmp/fuzz-FuzzSSE.log; exit 1; }
	@echo "fuzz FuzzSSE: $(FUZZTIME) ok"

## bench: ingest vs a bare net/http handler with dispatch idle and running
## (events/s, p50/p99, ratios); the alert storm on the real binary (acks,
## time to deliver, agent and Config Service calls, digests, peak RSS); then
## the real binary with BENCH_EVENTS (default 1 000 000) events stored: start
## to ready, events list times, ack and ack-to-agent latency and RSS; and
## migration 7 on BENCH_MIGRATE_EVENTS (1 000 000) events on both databases;
## answers posted per second through the outbox to the GitHub stand-in
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 90m ./server/ | grep -E '^(ingest|pages|storage|purge|copy|Benchmark)'
	ORCHESTRATOR_TEST_REQUIRE_POSTGRES=1 $(GO) test -run '^$$' -bench 'BenchmarkMigration7|BenchmarkMigration13|BenchmarkMigration17|BenchmarkMigrations18To20|BenchmarkMigrations21To23' -benchtime 1x -timeout 60m ./store/ | grep -E '^(migration|Benchmark)'
	$(GO) test -run '^$$' -bench 'Payload' -benchtime 20000x ./store/ | grep -E '^Benchmark'
	$(GO) test -run '^$$' -bench 'BenchmarkGroupCommit' -benchtime 1x ./store/ | grep -E '^group commit'
	$(GO) test -run '^$$' -bench 'BenchmarkInhibitor' -benchtime 20000x ./server/noise/ | grep -E '^Benchmark'
	$(GO) test -run '^$$' -bench 'BenchmarkFiringAlerts' -benchtime 5x ./store/ | grep -E '^Benchmark'
	ORCHESTRATOR_TEST_REQUIRE_POSTGRES=1 $(GO) test -run '^$$' -bench 'BenchmarkReleaseHold' -benchtime 1x ./store/ | grep -E '^Benchmark'
	$(GO) test -run '^$$' -bench 'BenchmarkOutbox' -benchtime 1x ./server/answers/ | grep -E '^outbox'
	$(GO) test -run '^$$' -bench 'BenchmarkIngestTracing' -benchtime 1x ./server/ | grep -E '^ingest tracing'
	$(GO) test -run '^$$' -bench 'BenchmarkStorm|BenchmarkStormWithNoise|BenchmarkStormTraced|BenchmarkStormWithHalfInhibited|BenchmarkStormAlertmanager|BenchmarkReplicas|BenchmarkSnapshot|BenchmarkProcess' -benchtime 1x -timeout 60m ./cmd/orchestrator/ | grep -vE '^(goos|goarch|pkg|cpu|PASS|ok)'

## alertmanager: build Prometheus Alertmanager once into the cache (the Alertmanager source's tests run it)
alertmanager:
	@hack/alertmanager.sh >/dev/null

## jaeger: build Jaeger v2 once into the cache (the tracing test sends the appliance's spans to it)
jaeger:
	@hack/jaeger.sh >/dev/null

## kube-assets: build kube-apiserver into ~/.cache/orchestrator-edge (once) for the integration tests
kube-assets:
	@hack/kube-apiserver.sh >/dev/null

## lint: gofmt, go vet, staticcheck
lint:
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	cd hack/tools && $(GO) vet ./...

## clean: remove the binary and the dev data directory
clean:
	rm -rf bin data dist
