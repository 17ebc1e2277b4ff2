#!/usr/bin/env bash
# Router profile, loopback only: runs the real dnsfence binary in a memory cgroup limited to
# MEMORY (default 64 MiB, like a small home router), loads the 1.16M-name real list, serves QPS
# (default 2,000) queries a second with dnsperf for DURATION seconds (default 60) while the list
# file is replaced REPLACES times (default 3, each time with different content), and reports OOM
# kills, lost queries and peak memory. Exits non-zero on an OOM kill, a lost query, a crash or a
# missed reload.
#
# The cgroup is created below this shell's own memory cgroup (cgroup v1 memory.limit_in_bytes,
# which these machines have, or v2 memory.max) and removed at the end, even on failure. Needs
# root (or a delegated cgroup), dnsperf and dig (Debian: apt-get install dnsperf dnsutils), and
# ../shared/data/blocklists/big-real.txt (or LIST=path). Usage: scripts/router-profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LIST=${LIST:-../shared/data/blocklists/big-real.txt}
MEMORY=${MEMORY:-64M}
QPS=${QPS:-2000}
DURATION=${DURATION:-60}
REPLACES=${REPLACES:-3}
DNS_PORT=${DNS_PORT:-15473} HTTP=127.0.0.1:19273 UP=127.0.0.1:15409

for tool in dnsperf dig; do
  command -v "$tool" >/dev/null || { echo "router-profile: $tool not installed (apt-get install dnsperf dnsutils)" >&2; exit 2; }
done
[ -r "$LIST" ] || { echo "router-profile: $LIST not readable" >&2; exit 2; }
bytes=$(numfmt --from=iec "$MEMORY")

# Find where to make the cgroup: below our own, so that it stays inside whatever contains us.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  v=2
  parent=/sys/fs/cgroup$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
else
  v=1
  parent=/sys/fs/cgroup/memory$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)
fi
parent=${parent%/}
cg="$parent/dnsfence-router-$$"

work=$(mktemp -d)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -d "$cg" ]; then
    # Anything left in it (there should be nothing) is killed so that the group can go.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      [ -s "$cg/cgroup.procs" ] && xargs -r kill -9 < "$cg/cgroup.procs" 2>/dev/null || true
      rmdir "$cg" 2>/dev/null && break
      sleep 0.2
    done
    [ -d "$cg" ] && echo "router-profile: could not remove $cg" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$cg" || { echo "router-profile: cannot create a cgroup in $parent (root or a delegated cgroup needed)" >&2; exit 2; }
if [ $v = 2 ]; then
  grep -qw memory "$parent/cgroup.subtree_control" 2>/dev/null || echo +memory > "$parent/cgroup.subtree_control"
  echo "$bytes" > "$cg/memory.max"
  [ -f "$cg/memory.swap.max" ] && echo 0 > "$cg/memory.swap.max"
else
  echo "$bytes" > "$cg/memory.limit_in_bytes"
  # No swap either (a router has none): memsw is memory plus swap.
  [ -f "$cg/memory.memsw.limit_in_bytes" ] && echo "$bytes" > "$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
fi
oom_kills() {
  if [ $v = 2 ]; then awk '/^oom_kill / { print $2 }' "$cg/memory.events"
  else awk '/^oom_kill / { k = $2 } END { print k + 0 }' "$cg/memory.oom_control"; fi
}
cg_peak() {   # bytes; the cgroup counts page cache too (the list file, the index file)
  if [ $v = 2 ]; then cat "$cg/memory.peak" 2>/dev/null || echo 0
  else cat "$cg/memory.max_usage_in_bytes"; fi
}

go build -trimpath -o "$work/dnsfence" ./cmd/dnsfence
go build -o "$work/loopdns" ./scripts/loopdns
"$work/loopdns" -listen "$UP" & pids+=("$!")
mkdir -p "$work/fence" "$work/cache"
cp "$LIST" "$work/fence/big.txt"
entries=$(wc -l < "$work/fence/big.txt")
first=$(head -1 "$work/fence/big.txt")
cat > "$work/fence/dnsfence.yaml" <<YAML
listen: ["127.0.0.1:$DNS_PORT"]
upstreams: ["$UP"]
rate_limit: {client_qps: 0}
http: {listen: "$HTTP"}
log: {level: info}
downloads: {cache_dir: "$work/cache"}
blocklists: [{name: big, path: "$work/fence/big.txt"}]
YAML

# The server joins the cgroup before exec, so everything it allocates is charged there.
t0=$(date +%s%N)
sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cg" \
  "$work/dnsfence" -config "$work/fence/dnsfence.yaml" 2> "$work/dnsfence.log" &
pid=$!; pids+=("$pid")
until dig +tries=1 +time=1 -p "$DNS_PORT" @127.0.0.1 "$first" 2>/dev/null | grep -q NXDOMAIN; do
  kill -0 "$pid" 2>/dev/null || { tail -20 "$work/dnsfence.log" >&2; echo "router-profile: dnsfence died while loading (OOM kills: $(oom_kills))" >&2; exit 1; }
  sleep 0.05
done
t1=$(date +%s%N)
sleep 2
steady=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")

# Half list names, half allowed names answered by the loopback upstream.
awk -v n=20000 'NR % 50 == 0 && c < n/2 { print $1 " A"; c++ } END { for (i = 0; i < n/2; i++) printf "host-%d.allowed.bench A\n", i % 1000 }' \
  "$work/fence/big.txt" | shuf --random-source=<(yes) > "$work/queries"
# Replace the list REPLACES times, spread over the run: each copy leaves out a different part of
# the list, so every reload is a real rebuild. Written aside and renamed in, as updaters must.
(
  gap=$(( DURATION / (REPLACES + 1) ))
  for i in $(seq "$REPLACES"); do
    sleep "$gap"
    awk -v i="$i" 'NR % 97 != i' "$LIST" > "$work/fence/.big.new"
    mv "$work/fence/.big.new" "$work/fence/big.txt"
  done
) & replacer=$!; pids+=("$replacer")
out=$(dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$work/queries" -l "$DURATION" -Q "$QPS" -c 4 -t 2 2>&1) || true
wait "$replacer" 2>/dev/null || true
sleep 3   # let the last reload finish
alive=yes; kill -0 "$pid" 2>/dev/null || alive=no
hwm=0; [ $alive = yes ] && hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
reloads=$(grep -c "blocklists reloaded" "$work/dnsfence.log" || true)
sent=$(awk '/Queries sent:/ { print $3; exit }' <<<"$out")
lost=$(awk '/Queries lost:/ { print $3; exit }' <<<"$out")
maxlat=$(awk '/Average Latency/ { gsub(/[(),]/, ""); for (i = 1; i <= NF; i++) if ($i == "max") print $(i+1)*1000; exit }' <<<"$out")
kills=$(oom_kills)
mib() { awk -v k="$1" -v d="$2" 'BEGIN { printf "%.1f", k / d }'; }

printf '\nrouter profile: cgroup v%s, memory limit %s, list %s (%s entries)\n' "$v" "$MEMORY" "$LIST" "$entries"
printf 'first answer after start:      %d ms\n' $(( (t1 - t0) / 1000000 ))
printf 'RSS after load:                %s MiB\n' "$(mib "$steady" 1024)"
printf 'peak RSS (VmHWM):              %s MiB\n' "$(mib "$hwm" 1024)"
printf 'peak cgroup usage:             %s MiB (page cache included)\n' "$(mib "$(cg_peak)" 1048576)"
printf 'list replaced / reloads:       %s / %s\n' "$REPLACES" "$reloads"
printf 'dnsperf %s qps for %ss:        sent %s, lost %s, max latency %s ms\n' "$QPS" "$DURATION" "$sent" "$lost" "$maxlat"
printf 'OOM kills:                     %s; dnsfence alive at the end: %s\n' "$kills" "$alive"

fail=0
[ "$kills" = 0 ] || { echo "FAIL: OOM kill"; fail=1; }
[ "$alive" = yes ] || { echo "FAIL: dnsfence is gone"; tail -20 "$work/dnsfence.log"; fail=1; }
[ "${lost:-1}" = 0 ] || { echo "FAIL: lost queries"; fail=1; }
[ "$reloads" -ge "$REPLACES" ] || { echo "FAIL: $reloads reloads for $REPLACES replacements"; fail=1; }
exit $fail
