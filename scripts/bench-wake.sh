#!/usr/bin/env bash
# What one wake-up costs a Go UDP server on one CPU, with no DNS work: scripts/wakecost answers
# every query with NXDOMAIN through the runtime poller (poll), a blocking read through package
# syscall on a locked thread (syscall), or a blocking RawSyscall6 on a locked thread with
# GOMAXPROCS=2 (raw); dnsdist answering every query with an NXDOMAIN rule is the baseline.
# Each at fixed rates (dnsperf -Q), server on CPU 0, dnsperf on CPU 1, loopback only.
# Prints per round: p50 and p99 latency (ms) and the server's CPU µs per answered query.
# Needs dnsperf and dnsdist (Debian). ROUNDS (2), RATES ("5000 20000"), DURATION (5 s).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/benchlib.sh
PATH=$PATH:/usr/sbin
for tool in dnsperf dnsdist taskset; do
  command -v "$tool" >/dev/null || { echo "bench-wake: $tool not found (apt-get install dnsperf dnsdist)" >&2; exit 1; }
done
ROUNDS=${ROUNDS:-2} RATES=${RATES:-"5000 20000"} DURATION=${DURATION:-5} PORT=${PORT:-15573}
SERVERS=${SERVERS:-"poll syscall raw dnsdist"}
cpus=0; client=1
[ "$(nproc)" -ge 2 ] || { echo "bench-wake: one CPU: the server and dnsperf share it" >&2; client=0; }

work=$(mktemp -d); pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/wakecost" ./scripts/wakecost
awk 'BEGIN { for (i = 0; i < 200000; i++) printf "n%d.example A\n", i }' > "$work/queries"
printf 'setLocal("127.0.0.1:%s")\nsetSecurityPollSuffix("")\naddAction(AllRule(), RCodeAction(DNSRCode.NXDOMAIN))\n' \
  "$PORT" > "$work/dnsdist.conf"
hz=$(getconf CLK_TCK)

for round in $(seq "$ROUNDS"); do
  for server in $SERVERS; do
    case $server in
      poll | syscall) taskset -c $cpus "$work/wakecost" -mode "$server" -listen "127.0.0.1:$PORT" & pid=$! ;;
      raw) GOMAXPROCS=2 taskset -c $cpus "$work/wakecost" -mode raw -listen "127.0.0.1:$PORT" & pid=$! ;;
      dnsdist) taskset -c $cpus dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" >"$work/dnsdist.log" 2>&1 & pid=$! ;;
      *) echo "bench-wake: unknown server $server" >&2; exit 1 ;;
    esac
    sleep 1
    for rate in $RATES; do
      t0=$(ticks "$pid")
      taskset -c $client dnsperf -s 127.0.0.1 -p "$PORT" -d "$work/queries" -c 8 -T 1 -t 2 -l "$DURATION" -Q "$rate" -v > "$work/out" 2>&1
      t1=$(ticks "$pid")
      awk -v s="$server" -v r="$round" -v rate="$rate" -v cpu=$((t1 - t0)) -v hz="$hz" \
        -v p50="$(percentile 50 "$work/out")" -v p99="$(percentile 99 "$work/out")" '
        /Queries sent:/ { sent = $3 } /Queries lost:/ { lost = $3 }
        END { printf "%-8s round %d %6d qps  p50 %s ms  p99 %s ms  lost %d  CPU %.1f us/query\n",
          s, r, rate, p50, p99, lost, 1e6 * cpu / hz / (sent - lost) }' "$work/out"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  done
done
