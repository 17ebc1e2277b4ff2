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
rc=0
go test -race -shuffle=on -count=1 -timeout 10m ./... "$@" || rc=$?
if [ -s "$DNSFENCE_SKIPPED" ]; then
  echo
  echo "Skipped (missing tools; .ci/run installs them):"
  sort -u "$DNSFENCE_SKIPPED" | sed 's/^/  /'
fi
exit "$rc"
