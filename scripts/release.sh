#!/usr/bin/env bash
# Static release binaries for Linux servers and routers into dist/, plus SHA256SUMS.
# CGO_ENABLED=0 makes them static (no libc: they run on musl, glibc and scratch images alike);
# -trimpath drops local paths; -s -w drops the symbol and debug tables (smaller on flash).
# MIPS routers mostly lack an FPU, hence GOMIPS=softfloat. Usage: VERSION=v1.2.3 scripts/release.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
DIST=${DIST:-dist}

# name GOARCH extra-env
targets=(
  "amd64  amd64"
  "arm64  arm64"
  "armv7  arm    GOARM=7"
  "armv6  arm    GOARM=6"
  "mips   mips   GOMIPS=softfloat"
  "mipsle mipsle GOMIPS=softfloat"
)

rm -rf "$DIST"
mkdir -p "$DIST"
for t in "${targets[@]}"; do
  read -r name arch extra <<<"$t"
  out="$DIST/dnsfence-$VERSION-linux-$name"
  env CGO_ENABLED=0 GOOS=linux GOARCH="$arch" $extra \
    go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$out" ./cmd/dnsfence
done

(cd "$DIST" && sha256sum dnsfence-* > SHA256SUMS)
for f in "$DIST"/dnsfence-*; do
  stat -c '%s %n' "$f"
done | awk '{ printf "%-44s %9d bytes %5.1f MiB\n", $2, $1, $1 / 1048576 }'
