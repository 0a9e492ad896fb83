# VelociCompanion — developer entry points. `make help` lists them.
#
# PostgreSQL: every target that needs a database first runs
# deploy/dev/ensure-postgres.sh, which does nothing when VC_DATABASE_URL,
# DATABASE_URL or VC_TEST_DATABASE_URL is set or when 127.0.0.1:5432 already
# answers, starts the machine's Debian cluster if there is one, and otherwise
# runs a private cluster under ./.data/postgres (installing Debian's postgresql
# packages when needed). Set VC_PG_PORT to use another port for that cluster.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

GO          ?= go
PKG         ?= ./...
BIN_DIR     := bin
BINARY      := $(BIN_DIR)/velocicompanion
TOOLS_DIR   := .tools
ENSURE_PG   := deploy/dev/ensure-postgres.sh

# staticcheck is pinned; bump deliberately (it must support the Go version in go.mod).
STATICCHECK_VERSION := v0.8.2
STATICCHECK         := $(TOOLS_DIR)/staticcheck-$(STATICCHECK_VERSION)/staticcheck

TEST_TIMEOUT  ?= 15m
TESTFLAGS     ?=
BENCH         ?= .
BENCHTIME     ?= 2s
BENCH_TIMEOUT ?= 30m
BENCHFLAGS    ?=

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

# A private cluster on a non-default port needs the app and the tests pointed at it.
ifneq ($(strip $(VC_PG_PORT)),)
DB_ENV := VC_DATABASE_URL="$${VC_DATABASE_URL:-postgres://postgres@127.0.0.1:$(VC_PG_PORT)/velocicompanion?sslmode=disable}" \
          VC_TEST_DATABASE_URL="$${VC_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:$(VC_PG_PORT)/postgres?sslmode=disable}"
else
DB_ENV :=
endif

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: postgres
postgres: ## make sure PostgreSQL accepts connections (see deploy/dev/ensure-postgres.sh)
	@$(ENSURE_PG)

.PHONY: postgres-stop
postgres-stop: ## stop the private PostgreSQL cluster under ./.data (never the machine's own)
	@$(ENSURE_PG) stop

.PHONY: run
run: postgres ## start the server on :8000 with embedded Kafka and data under ./.data
	$(DB_ENV) $(GO) run ./cmd/velocicompanion serve

.PHONY: migrate
migrate: postgres ## apply database migrations and exit
	$(DB_ENV) $(GO) run ./cmd/velocicompanion migrate

.PHONY: build
build: ## build a static binary into bin/
	@mkdir -p $(BIN_DIR)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BINARY) ./cmd/velocicompanion
	@echo "built $(BINARY) ($(VERSION))"

.PHONY: vet
vet: ## go vet
	$(GO) vet $(PKG)

.PHONY: test
test: postgres vet ## the whole suite with the race detector (what CI runs)
	$(DB_ENV) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $(PKG)

.PHONY: test-short
test-short: postgres ## the quick tests only (-short); CI never uses this
	$(DB_ENV) $(GO) test -short -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $(PKG)

.PHONY: cover
cover: postgres ## the suite with a coverage profile in coverage.out
	$(DB_ENV) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -coverprofile=coverage.out -covermode=atomic $(PKG)
	$(GO) tool cover -func=coverage.out | tail -n 1

.PHONY: lint
lint: $(STATICCHECK) ## gofmt, go vet, staticcheck and the import-direction check
	@echo "gofmt -l"
	@unformatted=$$(find . -path ./.git -prune -o -path ./.data -prune -o -path ./$(TOOLS_DIR) -prune \
		-o -path ./$(BIN_DIR) -prune -o -name '*.go' -type f -print | xargs -r gofmt -l); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKG)
	$(STATICCHECK) $(PKG)
	deploy/dev/check-imports.sh

.PHONY: proto
proto: ## regenerate adapters/velociraptor/proto (needs protoc, protoc-gen-go, protoc-gen-go-grpc)
	cd adapters/velociraptor/proto && PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative api.proto

$(STATICCHECK):
	@mkdir -p $(@D)
	GOBIN=$(abspath $(@D)) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: bench
bench: postgres ## the benchmarks (set BENCH=regexp, BENCHTIME=5s, VC_BENCH_EVENTS=n)
	@mkdir -p .data
	$(DB_ENV) $(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem -count=1 \
		-timeout $(BENCH_TIMEOUT) $(BENCHFLAGS) $(PKG) | tee .data/bench.txt
	@echo "results also in .data/bench.txt"

.PHONY: bench-full
bench-full: ## the benchmarks at full size: replay over 1,000,000 events
	@VC_BENCH_EVENTS=1000000 $(MAKE) bench BENCH_TIMEOUT=60m

.PHONY: docker
docker: ## build the container image velocicompanion:dev (needs a Docker engine)
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) -t velocicompanion:dev .

.PHONY: compose-up
compose-up: ## run PostgreSQL, Kafka (KRaft) and the app with docker compose
	@[ -f deploy/.env ] || { echo "copy deploy/.env.example to deploy/.env and fill in the secrets first"; exit 1; }
	docker compose -f deploy/docker-compose.yml up --build -d

.PHONY: compose-down
compose-down: ## stop the compose stack (volumes are kept)
	docker compose -f deploy/docker-compose.yml down

.PHONY: clean
clean: ## remove build output and coverage files (keeps ./.data, the database)
	rm -rf $(BIN_DIR) coverage.out coverage.html *.coverprofile
	$(GO) clean -testcache

.PHONY: clean-data
clean-data: postgres-stop ## stop the private cluster and delete ./.data (all local data!)
	rm -rf .data
