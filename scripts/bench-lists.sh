#!/usr/bin/env bash
# Process-level figures for a big blocklist, loopback only: how long until the first answer (a
# cold start that compiles the lists, then a restart that maps the index kept in the cache
# directory), RSS after load, peak RSS while loading and while reloading, and what reloads under load cost (lost
# queries, max latency) against a run without reloads measured in the same invocation. RELOAD=config
# makes each reload a config edit that changes the lists instead of a touched list file.
#
# Needs dnsperf (Debian: apt-get install dnsperf) and dig, and the 1.16M-domain real list at
# ../shared/data/blocklists/big-real.txt (or LIST=path). SERVER_CPUS and CLIENT_CPUS (taskset CPU
# lists, e.g. SERVER_CPUS=1 CLIENT_CPUS=0) pin dnsfence and the load generator apart, to see what
# a reload costs a one-core router. Usage: scripts/bench-lists.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LIST=${LIST:-../shared/data/blocklists/big-real.txt}
QPS=${QPS:-5000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
RELOADS=${RELOADS:-3}
DNS_PORT=15463 HTTP=127.0.0.1:19263 UP=127.0.0.1:15399

server=() client=()
[ -n "${SERVER_CPUS:-}" ] && server=(taskset -c "$SERVER_CPUS")
[ -n "${CLIENT_CPUS:-}" ] && client=(taskset -c "$CLIENT_CPUS")
for tool in dnsperf dig; do
  command -v "$tool" >/dev/null || { echo "bench-lists: $tool not installed (apt-get install dnsperf dnsutils)" >&2; exit 2; }
done
[ -r "$LIST" ] || { echo "bench-lists: $LIST not readable" >&2; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -trimpath -o "$work/dnsfence" ./cmd/dnsfence
go build -o "$work/loopdns" ./scripts/loopdns
"${client[@]}" "$work/loopdns" -listen "$UP" & pids+=("$!")
# The config and the list get a directory of their own: dnsfence watches their directories, and
# output written next to them would wake the watcher.
mkdir -p "$work/fence"
cp "$LIST" "$work/fence/big.txt"
entries=$(wc -l < "$work/fence/big.txt")
first=$(head -1 "$work/fence/big.txt")
cat > "$work/fence/dnsfence.yaml" <<YAML
listen: ["127.0.0.1:$DNS_PORT"]
upstreams: ["$UP"]
rate_limit: {client_qps: 0}
http: {listen: "$HTTP"}
log: {level: info}   # info: the reload lines are counted below
downloads: {cache_dir: "$work/cache"}   # the compiled index is kept there
blocklists: [{name: big, path: "$work/fence/big.txt"}]
YAML

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }   # KiB
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }   # KiB, the peak so far
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# Time to first answer: from exec to the first NXDOMAIN for a list entry. The cold start compiles
# the list and keeps the index; the measured process is the restart, which maps it.
start() {
  t0=$(date +%s%N)
  /usr/bin/time -v -o "$work/time.txt" "${server[@]}" "$work/dnsfence" -config "$work/fence/dnsfence.yaml" 2> "$work/dnsfence.log" &
  timepid=$!; pids+=("$timepid")
  until dig +tries=1 +time=1 -p "$DNS_PORT" @127.0.0.1 "$first" 2>/dev/null | grep -q NXDOMAIN; do
    kill -0 "$timepid" 2>/dev/null || { cat "$work/dnsfence.log" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s%N)
  pid=$(pgrep -P "$timepid" dnsfence)
}
start
cold_ms=$(( (t1 - t0) / 1000000 ))
cold_peak=$(hwm "$pid")
kill "$pid"; wait "$timepid" 2>/dev/null || true
start
sleep 2
load_peak=$(hwm "$pid"); steady=$(rss "$pid")

# Query mix: half list names, half allowed names (answered by the loopback upstream).
awk -v n=20000 'NR % 50 == 0 && c < n/2 { print $1 " A"; c++ } END { for (i = 0; i < n/2; i++) printf "host-%d.allowed.bench A\n", i % 1000 }' \
  "$work/fence/big.txt" | shuf --random-source=<(yes) > "$work/queries"
perf() { "${client[@]}" dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$work/queries" -l "$SECONDS_PER_RUN" -Q "$QPS" -c 4 -t 2 2>&1; }
field() { awk -v k="$1" '$0 ~ k { print $NF; exit }' <<<"$2"; }
lost() { awk '/Queries lost:/ { print $3; exit }' <<<"$1"; }
maxlat() { awk '/Average Latency/ { gsub(/[(),]/, ""); for (i = 1; i <= NF; i++) if ($i == "max") print $(i+1)*1000; exit }' <<<"$1"; }

base=$(perf)
base_peak=$(hwm "$pid")   # the same load without reloads: what the reload peak is compared with
# RELOAD=config: each reload is a config edit that adds or removes a small second list, so the
# whole set is built anew for the new config (RELOAD=lists, the default: the list file is touched).
if [ "${RELOAD:-lists}" = config ]; then
  echo "extra.bench.example" > "$work/extra.txt"
  reload() {
    if grep -q extra "$work/fence/dnsfence.yaml"; then
      sed -i '/name: extra/d' "$work/fence/dnsfence.yaml"
    else
      echo "  - {name: extra, path: \"$work/extra.txt\"}" >> "$work/fence/dnsfence.yaml"
    fi
    kill -HUP "$pid"
  }
  sed -i "s|^blocklists: \[\(.*\)\]$|blocklists:\n  - \1|" "$work/fence/dnsfence.yaml"
else
  reload() { touch "$work/fence/big.txt"; kill -HUP "$pid"; }
fi
( sleep 2; for _ in $(seq "$RELOADS"); do reload; sleep 2; done ) &
with=$(perf)
wait $! 2>/dev/null || true
reload_peak=$(hwm "$pid")
grep -cE "blocklists reloaded|blocklists built for the new config" "$work/dnsfence.log" > "$work/reloads" || true
# Reloads whose index a child process built (see indexchild): how many, how long each child ran
# and the largest peak RSS of one (not part of the server's figures above: a process of its own).
child=$(grep -c '"built_in": "child"' "$work/dnsfence.log" || true)
child_took=$(sed -n 's/.*index child exited.*"took": "\([^"]*\)".*/\1/p' "$work/dnsfence.log" | paste -sd, -)
child_rss=$(sed -n 's/.*index child exited.*"peak_rss": "\([^"]*\)".*/\1/p' "$work/dnsfence.log" | sort -n | tail -1)
kill "$pid"; wait "$timepid" 2>/dev/null || true

printf '\nlist: %s (%s entries)\n' "$LIST" "$entries"
printf 'first answer, cold start:    %d ms (peak RSS %s MiB)\n' "$cold_ms" "$(mib "$cold_peak")"
printf 'first answer, kept index:    %d ms\n' $(( (t1 - t0) / 1000000 ))
printf 'RSS after load:             %s MiB\n' "$(mib "$steady")"
printf 'peak RSS while loading:     %s MiB (%.2fx steady)\n' "$(mib "$load_peak")" "$(awk -v a="$load_peak" -v b="$steady" 'BEGIN{print a/b}')"
printf 'peak RSS under load:         %s MiB without reloads (%.2fx steady)\n' "$(mib "$base_peak")" "$(awk -v a="$base_peak" -v b="$steady" 'BEGIN{print a/b}')"
printf 'peak RSS after %d reloads:   %s MiB (%.2fx steady, %.2fx the peak without reloads)\n' "$RELOADS" "$(mib "$reload_peak")" \
  "$(awk -v a="$reload_peak" -v b="$steady" 'BEGIN{print a/b}')" "$(awk -v a="$reload_peak" -v b="$base_peak" 'BEGIN{print a/b}')"
printf 'max RSS (/usr/bin/time -v): %s MiB\n' "$(mib "$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$work/time.txt")")"
printf 'reloads logged:             %s (%s built in a child process; children ran %s, peak RSS %s)\n' "$(cat "$work/reloads")" \
  "${child:-0}" "${child_took:-n/a}" "${child_rss:-n/a}"
printf 'dnsperf at %s qps, %ss:      without reloads lost %s, max %s ms; with %d reloads lost %s, max %s ms\n' \
  "$QPS" "$SECONDS_PER_RUN" "$(lost "$base")" "$(maxlat "$base")" "$RELOADS" "$(lost "$with")" "$(maxlat "$with")"
