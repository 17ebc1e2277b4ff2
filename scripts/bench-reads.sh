#!/usr/bin/env bash
# dnsfence's UDP read modes side by side at fixed rates: blocking reads answered by the reading
# goroutine (limits.udp_blocking_reads: true, the default) and Go's network poller (false).
# dnsfence runs on CPU 0 and dnsperf (and knot) on CPU 1, loopback only; the rounds alternate
# the modes. Prints per round, mode, workload and rate: p50 and p99 latency (ms), the server's
# CPU µs per answered query and context switches per query (all threads, /proc); with PERF=1
# also the system calls per query (perf stat). Then, per mode, what IDLE seconds without queries
# cost (CPU ticks and context switches).
# Workloads: blocked (names of a 10,000-name list, answered by dnsfence itself) and missed
# (never-repeated names under bench., each forwarded to knot).
# Needs dnsperf, knot and dig (Debian: apt-get install dnsperf knot dnsutils), perf for PERF=1.
# ROUNDS (2), RATES ("5000 20000"), DURATION (5 s), WORKLOADS ("blocked missed"), IDLE (10 s).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/benchlib.sh
PATH=$PATH:/usr/sbin:/sbin
for tool in dnsperf knotd dig taskset; do
  command -v "$tool" >/dev/null || { echo "bench-reads: $tool not found (apt-get install dnsperf knot dnsutils)" >&2; exit 1; }
done
ROUNDS=${ROUNDS:-2} RATES=${RATES:-"5000 20000"} DURATION=${DURATION:-5} IDLE=${IDLE:-10}
WORKLOADS=${WORKLOADS:-"blocked missed"}
PORT=15583 KNOT_PORT=15585 HTTP=127.0.0.1:19383
if [ "$(nproc)" -ge 2 ]; then srv=(taskset -c 0) cli=(taskset -c 1); else
  echo "bench-reads: one CPU: dnsfence and dnsperf share it" >&2; srv=() cli=(); fi

work=$(mktemp -d); pid= knot=
cleanup() { for p in $pid $knot; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
go build -trimpath -o "$work/dnsfence" ./cmd/dnsfence
knot_files "$work" "$KNOT_PORT"
"${cli[@]}" knotd -c "$work/knot.conf" 2> "$work/knot.log" & knot=$!
wait_for "$KNOT_PORT" probe.bench NOERROR "$knot" "$work/knot.log"
[ ${#cli[@]} -gt 0 ] && pin_knot "$knot" 1
mkdir "$work/list" "$work/out" # the config and list in directories of their own (dnsfence watches them)
awk 'BEGIN { for (i = 0; i < 10000; i++) printf "b%d.blocked.example\n", i }' > "$work/list/list.txt"
hz=$(getconf CLK_TCK)

start() { # mode: blocking or poller
  mkdir -p "$work/$1"
  cat > "$work/$1/dnsfence.yaml" <<YAML
listen: ["127.0.0.1:$PORT"]
upstreams: ["127.0.0.1:$KNOT_PORT"]
rate_limit: {client_qps: 0}
http: {listen: "$HTTP"}
log: {level: warn}
blocklists: [{name: l, path: "$work/list/list.txt"}]
limits: {udp_blocking_reads: $([ "$1" = blocking ] && echo true || echo false)}
YAML
  "${srv[@]}" "$work/dnsfence" -config "$work/$1/dnsfence.yaml" 2> "$work/$1/log" & pid=$!
  wait_for "$PORT" b0.blocked.example NXDOMAIN "$pid" "$work/$1/log"
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

run=0
for round in $(seq "$ROUNDS"); do
  modes="blocking poller"; [ $((round % 2)) -eq 0 ] && modes="poller blocking"
  for mode in $modes; do
    start "$mode"
    for workload in $WORKLOADS; do
      for rate in $RATES; do
        run=$((run + 1))
        n=$((rate * DURATION))
        case $workload in
          blocked) awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "b%d.blocked.example A\n", i % 10000 }' ;;
          missed) awk -v n="$n" -v r="$run$RANDOM" 'BEGIN { for (i = 0; i < n; i++) printf "u%d.%s.bench A\n", i, r }' ;;
          *) echo "bench-reads: unknown workload $workload" >&2; exit 1 ;;
        esac > "$work/queries"
        t0=$(ticks "$pid") s0=$(switches "$pid")
        if [ -n "${PERF:-}" ]; then
          perf stat -x, -e 'syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_futex' \
            -p "$pid" -o "$work/out/perf" & perf=$!
        fi
        "${cli[@]}" dnsperf -s 127.0.0.1 -p "$PORT" -d "$work/queries" -c 8 -T 1 -t 2 -l "$DURATION" -Q "$rate" -v > "$work/out/dnsperf" 2>&1 || true
        sys=
        if [ -n "${PERF:-}" ]; then
          kill -INT "$perf"; wait "$perf" 2>/dev/null || true
          sys=$(awk -F, -v n="$n" '/syscalls:/ { sub(/.*sys_enter_/, "", $3); printf " %s %.1f", $3, $1 / n }' "$work/out/perf")
        fi
        t1=$(ticks "$pid") s1=$(switches "$pid")
        answered=$(awk '/^> / && $2 != "T"' "$work/out/dnsperf" | wc -l)
        printf '%-8s round %d  %-7s %5d qps  p50 %s ms  p99 %s ms  answered %d/%d  CPU %.1f us/query  switches %.1f/query%s\n' \
          "$mode" "$round" "$workload" "$rate" "$(percentile 50 "$work/out/dnsperf")" "$(percentile 99 "$work/out/dnsperf")" \
          "$answered" "$n" "$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$answered" 'BEGIN { print n ? t * 1e6 / hz / n : 0 }')" \
          "$(awk -v s=$((s1 - s0)) -v n="$answered" 'BEGIN { print n ? s / n : 0 }')" "$sys"
      done
    done
    if [ "$round" -eq 1 ] && [ "$IDLE" -gt 0 ]; then
      sleep 1; t0=$(ticks "$pid") s0=$(switches "$pid"); sleep "$IDLE"
      printf '%-8s idle %d s: %d CPU ticks, %d context switches\n' "$mode" "$IDLE" $(( $(ticks "$pid") - t0 )) $(( $(switches "$pid") - s0 ))
    fi
    stop
  done
done
