#!/usr/bin/env bash
# Soak test, loopback only and bounded in time: dnsperf sends a mixed load (blocked and allowed
# names) at dnsfence for DURATION seconds while the blocklist is rewritten and reloaded every
# RELOAD_EVERY seconds and one of the two upstreams is killed at 1/3 and restarted at 2/3.
# Reports lost queries (there should be none: the other upstream stays up), the reload count,
# and RSS at start and end; fails if queries were lost or RSS grew past MAX_GROWTH_MB.
#
# Needs dnsperf (Debian: apt-get install dnsperf). Usage: scripts/soak.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-${DURATION:-180}}
QPS=${QPS:-3000}
RELOAD_EVERY=${RELOAD_EVERY:-3}
MAX_GROWTH_MB=${MAX_GROWTH_MB:-30}
DNS=127.0.0.1:15353 HTTP=127.0.0.1:19253 UP1=127.0.0.1:15301 UP2=127.0.0.1:15302

command -v dnsperf >/dev/null || { echo "soak: dnsperf not installed (apt-get install dnsperf)" >&2; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/dnsfence" ./cmd/dnsfence
go build -o "$work/loopdns" ./scripts/loopdns
"$work/loopdns" -listen "$UP1" & up1=$!; pids+=("$up1")
"$work/loopdns" -listen "$UP2" & pids+=("$!")

# A list of 50k generated names, rewritten (write aside, rename) before every reload.
gen_list() { awk -v s="$1" 'BEGIN { for (i = 0; i < 50000; i++) printf "blocked-%d-%d.soak.example\n", s, i }' > "$work/list.tmp" && mv "$work/list.tmp" "$work/list.txt"; }
gen_list 0
cat > "$work/dnsfence.yaml" <<YAML
listen: ["$DNS"]
upstreams: ["$UP1", "$UP2"]
upstream_timeout: 500ms
rate_limit: {client_qps: 0}
http: {listen: "$HTTP"}
log: {level: warn}
blocklists: [{name: soak, path: "$work/list.txt"}]
YAML
"$work/dnsfence" -config "$work/dnsfence.yaml" 2> "$work/dnsfence.log" & fence=$!; pids+=("$fence")
for _ in $(seq 50); do curl -sf "http://$HTTP/healthz" >/dev/null && break; sleep 0.1; done

# Query mix: a third blocked (curated apps and the soak list's stable part), the rest allowed.
awk 'BEGIN { for (i = 0; i < 30000; i++) {
  r = i % 6
  if (r == 0) printf "api-%d.alipay.com A\n", i
  else if (r == 1) printf "blocked-0-%d.soak.example A\n", i   # only in the first list version
  else printf "host-%d.allowed.example %s\n", i, (i % 2 ? "A" : "AAAA") } }' > "$work/queries"

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$fence/status"; }
sleep 1
rss_start=$(rss)
dnsperf -s 127.0.0.1 -p "${DNS##*:}" -d "$work/queries" -l "$DURATION" -Q "$QPS" -t 5 > "$work/dnsperf.out" 2>&1 & perf=$!; pids+=("$perf")

start=$(date +%s) reloads=0 killed=0 restarted=0 gen=1
while kill -0 "$perf" 2>/dev/null; do
  sleep "$RELOAD_EVERY"
  gen_list "$gen"; gen=$((gen + 1))
  kill -HUP "$fence"; reloads=$((reloads + 1))
  elapsed=$(( $(date +%s) - start ))
  if [ $killed = 0 ] && [ $elapsed -ge $((DURATION / 3)) ]; then kill "$up1"; killed=1; echo "soak: t=${elapsed}s killed upstream $UP1"; fi
  if [ $killed = 1 ] && [ $restarted = 0 ] && [ $elapsed -ge $((2 * DURATION / 3)) ]; then
    "$work/loopdns" -listen "$UP1" & pids+=("$!"); restarted=1; echo "soak: t=${elapsed}s restarted upstream $UP1"
  fi
done
wait "$perf" || true
rss_end=$(rss)
kill -0 "$fence" || { echo "soak: dnsfence died" >&2; cat "$work/dnsfence.log" >&2; exit 1; }

sent=$(awk '/Queries sent:/ { print $3 }' "$work/dnsperf.out")
lost=$(awk '/Queries lost:/ { print $3 }' "$work/dnsperf.out")
qps=$(awk '/Queries per second:/ { print $4 }' "$work/dnsperf.out")
ok_reloads=$(curl -sf "http://$HTTP/metrics" | awk '/^dnsfence_blocklist_reloads_total\{list="soak",result="success"\}/ { print $2 }')
growth_mb=$(( (rss_end - rss_start) / 1024 ))
echo "soak: ${DURATION}s at ${QPS} qps target: sent=$sent lost=$lost qps=$qps"
echo "soak: reloads sent=$reloads succeeded=$ok_reloads (includes the initial load)"
echo "soak: RSS start=$((rss_start / 1024))MB end=$((rss_end / 1024))MB growth=${growth_mb}MB (bound ${MAX_GROWTH_MB}MB)"
status=0
[ "${lost:-1}" = 0 ] || { echo "soak: FAIL: $lost queries lost" >&2; status=1; }
[ "$growth_mb" -le "$MAX_GROWTH_MB" ] || { echo "soak: FAIL: RSS grew ${growth_mb}MB" >&2; status=1; }
exit $status
