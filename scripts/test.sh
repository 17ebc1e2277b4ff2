#!/usr/bin/env bash
# All tests: race detector on, random order. End-to-end tests build and run the real binary and
# drive it with dig, kdig, curl, prometheus and promtool; without them those tests skip, and the
# reasons are listed at the end. Under CI (CI=true; .ci/run installs the tools) a missing tool
# fails its test.
set -euo pipefail
cd "$(dirname "$0")/.."
DNSFENCE_SKIPPED=$(mktemp)
export DNSFENCE_SKIPPED
trap 'rm -f "$DNSFENCE_SKIPPED"' EXIT
ci=false
case "${CI:-}" in "" | false | 0) ;; *) ci=true ;; esac

# The race detector needs cgo and a C compiler; a machine with only Go runs without it.
race=(-race)
if ! command -v "$(go env CC)" >/dev/null 2>&1 || [ "$(go env CGO_ENABLED)" != 1 ]; then
  if $ci; then
    echo "the race detector needs a C compiler ($(go env CC)) and CGO_ENABLED=1" >&2
    exit 1
  fi
  race=()
  export CGO_ENABLED=0
  echo "race detector: off, no C compiler $(go env CC) (Debian: apt-get install gcc)" >>"$DNSFENCE_SKIPPED"
fi

rc=0
go test "${race[@]}" -shuffle=on -count=1 -timeout 10m ./... "$@" || rc=$?
if [ -s "$DNSFENCE_SKIPPED" ]; then
  echo
  echo "Skipped (missing tools; .ci/run installs them):"
  sort -u "$DNSFENCE_SKIPPED" | sed 's/^/  /'
fi
exit "$rc"
