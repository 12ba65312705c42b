# TrackOps — the two set-up commands are `make run` and `make test`.
GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN      := bin/trackops
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/trackops/trackops/internal/app.Version=$(VERSION)
# A hang guard per test binary, far above the suite's usual 3 to 9 minutes on
# 2 cores: a package slowed by a busy machine finishes, a hang still fails.
TEST_TIMEOUT ?= 25m

.PHONY: all build run test test-manifests test-short test-race services test-tools vet fmt bench bench-sweep bench-docs vulncheck clean testdb-clean chaos fuzz

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/trackops

# Installs and starts PostgreSQL (wal_level=logical) and Redis when missing.
services:
	./scripts/ensure-services.sh

# Installs Node.js and the KafkaJS client the interop test reads topics with.
test-tools:
	./scripts/ensure-test-tools.sh

# Runs the whole platform with the embedded Kafka-protocol broker.
run: services build
	./$(BIN) migrate
	./$(BIN) run

test: services test-tools
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) test-manifests

# The Kubernetes manifests, decoded into the k8s.io/api types; a module of
# its own (deploy/k8s) keeps those dependencies out of TrackOps' go.mod.
test-manifests:
	cd deploy/k8s && $(GO) vet ./... && $(GO) test -count=1 ./...

test-short: services test-tools
	$(GO) test -count=1 -short ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Every scenario against its ceiling (bench/results/latest.json), then the
# document regenerated from it, even when a scenario failed (it says so).
bench: services build
	./$(BIN) bench all --out bench/results/latest.json; status=$$?; $(MAKE) bench-docs && exit $$status

# The saga, relay and CDC paths at rising offered rates until each saturates
# (bench/results/sweep.json), then the document and charts regenerated.
bench-sweep: services build
	./$(BIN) bench all --sweep --out bench/results/sweep.json; status=$$?; $(MAKE) bench-docs && exit $$status

# docs/benchmarks.md's figures and docs/bench/*.svg from bench/results/*.json.
bench-docs:
	$(GO) run ./internal/bench/benchdocs

vulncheck:
	./scripts/vulncheck.sh

clean:
	rm -rf bin data

# Drops every database the tests created, templates included.
testdb-clean:
	./scripts/testdb-clean.sh

# The race detector over the whole suite (slower; not part of `make test`).
test-race: services test-tools
	$(GO) test -race -count=1 -timeout 20m ./...

# Issue 13's incremental snapshot test at full size: a 1,000,000-row table
# snapshotted while 1,000 changes a second stream into it (make test runs
# it with 50,000 rows).
.PHONY: test-cdc-snapshot-1m
test-cdc-snapshot-1m: services
	TRACKOPS_CDC_SNAPSHOT_ROWS=1000000 $(GO) test -count=1 -timeout 20m -v -run 'TestIncrementalSnapshotWhileStreaming$$' ./internal/cdc/

# The chaos suite (not part of `make test`): for both strategies, under load
# over scarce stock, 5 x SIGKILL, Redis killed and frozen, a private
# PostgreSQL cluster restarted, the broker log's tail cut; each run ends with
# `trackops verify --kafka`. Loopback only, bounded, stops by itself.
# CHAOS_LOAD=60s per run (about 25 min in all); CHAOS_STRATEGIES, CHAOS_FAULTS
# pick a subset; the table is printed and written to CHAOS_OUT. Then the
# nine-process cluster (TestClusterChaos): CHAOS_CLUSTER_LOAD=90s per
# strategy, three rounds of one SIGKILL per role.
CHAOS_LOAD ?= 60s
CHAOS_OUT  ?= bench/results/chaos.md
chaos: services
	mkdir -p $(dir $(CHAOS_OUT))
	CHAOS_LOAD=$(CHAOS_LOAD) CHAOS_OUT=$(abspath $(CHAOS_OUT)) $(GO) test -tags chaos -run '^(TestChaos|TestClusterChaos)$$' -count=1 -timeout 120m -v ./internal/e2e

# Every Go fuzz target for FUZZTIME each (not part of `make test`; CPU heavy).
# Findings are kept under testdata/fuzz/ and replay in `make test` afterwards.
FUZZTIME ?= 30s
fuzz: services
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh
