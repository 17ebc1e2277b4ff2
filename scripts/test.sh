#!/usr/bin/env bash
# All tests: race detector on, random order. End-to-end tests build and run the real binary and
# need dig (Debian dnsutils); .ci/run installs it.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -race -shuffle=on -count=1 -timeout 10m ./... "$@"
