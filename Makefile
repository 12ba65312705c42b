# TrackOps — the two set-up commands are `make run` and `make test`.
GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN      := bin/trackops
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/trackops/trackops/internal/app.Version=$(VERSION)
TEST_TIMEOUT ?= 14m

.PHONY: all build run test test-short test-race services vet fmt bench vulncheck clean testdb-clean fuzz

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/trackops

# Installs and starts PostgreSQL (wal_level=logical) and Redis when missing.
services:
	./scripts/ensure-services.sh

# Runs the whole platform with the embedded Kafka-protocol broker.
run: services build
	./$(BIN) migrate
	./$(BIN) run

test: services
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

test-short: services
	$(GO) test -count=1 -short ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

bench: services build
	./$(BIN) bench all --out bench/results/latest.json

vulncheck:
	./scripts/vulncheck.sh

clean:
	rm -rf bin data

# Drops every database the tests created, templates included.
testdb-clean:
	psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'trackops_t%'" postgres | \
	  while read -r db; do psql -h 127.0.0.1 -U postgres -qc "ALTER DATABASE $$db WITH is_template false" postgres; \
	  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $$db WITH (FORCE)" postgres; done

# The race detector over the whole suite (slower; not part of `make test`).
test-race: services
	$(GO) test -race -count=1 -timeout 20m ./...

# Every Go fuzz target for FUZZTIME each (not part of `make test`; CPU heavy).
# Findings are kept under testdata/fuzz/ and replay in `make test` afterwards.
FUZZTIME ?= 30s
fuzz: services
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh
