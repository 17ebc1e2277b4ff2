# Thin wrapper: the logic lives in scripts/. `make help` lists the targets.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
ARGS    ?=
FUZZTIME ?= 30s

.PHONY: help build run test lint fuzz release bench scaleout clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

build: ## build bin/dnsfence
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dnsfence ./cmd/dnsfence

run: build ## run dnsfence on the built-in config (127.0.0.1:1053, [::1]:1053); extra flags in ARGS="..."
	./bin/dnsfence $(ARGS)

test: lint ## lint, then every test with -race and -shuffle (what CI runs)
	scripts/test.sh

lint: ## gofmt check, go vet, staticcheck
	scripts/lint.sh

fuzz: ## run every fuzz target for FUZZTIME each (default 30s), e.g. make fuzz FUZZTIME=5m
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

release: ## static binaries for Linux amd64, arm64, armv7, armv6, mips, mipsle and SHA256SUMS in dist/
	VERSION=$(VERSION) scripts/release.sh

bench: ## dnsfence vs dnsdist on loopback: qps, latency, RSS (dnsperf, knot, dnsdist; ~8 min); ROUNDS= DURATION= RATES= LIST= FENCE_YAML= pass through
	scripts/bench.sh

scaleout: ## dnsdist in front of three dnsfence instances sharing a URL list: kill one, update the list
	scripts/scaleout.sh

clean: ## remove build output
	rm -rf bin dist
