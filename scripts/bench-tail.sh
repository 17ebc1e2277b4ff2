#!/usr/bin/env bash
# Latency percentiles of dnsfence variants against dnsdist at one fixed rate (or throughput at
# maximum load), loopback only, for finding where a tail comes from: each variant is dnsfence with extra config lines, environment
# or another binary, and every round runs dnsdist and each variant in turn. The servers run on
# CPU 0, dnsperf and knot on CPU 1, as in bench.sh. Prints per round and server: p50, p90, p99,
# p99.9 and max latency (µs, from dnsperf -v), the server's CPU µs per query (all of it, and the
# user part), context switches per query (all threads, /proc) and knot's CPU µs per query; then
# per server the medians over the rounds, with p99 and CPU as ratios to dnsdist's.
#
# WORKLOAD: blocked (names of a 10,000-name list; dnsdist answers them from its packet cache
#   after one warm-up pass, as in bench.sh's W1) or missed (never-repeated names under bench.,
#   forwarded to knot by both, as W3) or mixed (four queries in five for 1,000 names under bench.
#   that every server has cached after a warm-up pass, the fifth a never-repeated name: a cache
#   in front of real traffic, where most names repeat and some are new).
# VARIANTS ("default poller"): names; for each, YAML_<name> adds config lines, ENV_<name> sets
#   environment variables (e.g. ENV_nogc="GOGC=off") and BIN_<name> runs another dnsfence binary.
#   The default YAML_poller is 'limits: {udp_blocking_reads: false}'. FWD_<name>=poll|handoff|raw
#   runs scripts/fwdcost in that mode instead (missed only): the least a Go forwarder does per
#   query, structured three ways, as a floor for dnsfence's misses.
# RATE (5000; "max": dnsperf -q 100 with no rate and no latencies, and the medians give qps),
# DURATION (5 s), ROUNDS (3).
# PERF=1 samples each server with perf (cpu-clock, 4999 Hz) while dnsperf runs and adds its user
# and kernel CPU µs per query from the samples: /proc's user/system split is tick-sampled and
# read 0.0 for whole rounds on this kind of VM, perf's is not. PERF_KEEP=dir (with PERF=1) records
# call graphs and keeps each round's data as dir/<server>-r<round>.data, with the dnsfence binary
# as dir/dnsfence, for perf report afterwards.
# CLUSTERS=<µs> (missed, at a fixed rate) adds a line per round on when the answers slower than
# that were sent (dnsperf sends the names in order at RATE, so a name's number is its send time):
# how many, how many in the first 20 ms of load, how many 10 ms windows held 10 or more, and for
# dnsfence the collections during the round (go_gc_duration_seconds_count from /metrics).
# Needs dnsperf, knot, dnsdist and dig (Debian: apt-get install dnsperf knot dnsdist dnsutils).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/benchlib.sh
PATH=$PATH:/usr/sbin:/sbin
PERF=${PERF:-0} PERF_HZ=4999 # perf's sampling rate: each sample stands for 1/PERF_HZ s of CPU
PERF_KEEP=${PERF_KEEP:-} perfg=(); [ -n "$PERF_KEEP" ] && { mkdir -p "$PERF_KEEP"; perfg=(-g); }
tools="dnsperf knotd dnsdist dig taskset"; [ "$PERF" = 1 ] && tools="$tools perf"
CLUSTERS=${CLUSTERS:-}; [ -n "$CLUSTERS" ] && tools="$tools curl"
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "bench-tail: $tool not found (apt-get install dnsperf knot dnsdist dnsutils)" >&2; exit 1; }
done
WORKLOAD=${WORKLOAD:-blocked} RATE=${RATE:-5000} DURATION=${DURATION:-5} ROUNDS=${ROUNDS:-3}
VARIANTS=${VARIANTS:-"default poller"} YAML_poller=${YAML_poller:-'limits: {udp_blocking_reads: false}'}
case $WORKLOAD in blocked|missed|mixed) ;; *) echo "bench-tail: WORKLOAD is blocked, missed or mixed" >&2; exit 1 ;; esac
fwd=0
for v in $VARIANTS; do f="FWD_$v"; [ -n "${!f:-}" ] && fwd=1; done
[ "$fwd" = 1 ] && [ "$WORKLOAD" != missed ] && { echo "bench-tail: FWD_ variants forward everything: WORKLOAD=missed only" >&2; exit 1; }
[ -n "$CLUSTERS" ] && { [ "$WORKLOAD" != missed ] || [ "$RATE" = max ]; } && { echo "bench-tail: CLUSTERS needs WORKLOAD=missed and a fixed RATE" >&2; exit 1; }
KNOT_PORT=15785 DIST_PORT=15784 FIRST_PORT=15791
if [ "$(nproc)" -ge 2 ]; then srv=(taskset -c 0) cli=(taskset -c 1); else
  echo "bench-tail: one CPU: servers and dnsperf share it" >&2; srv=() cli=(); fi

work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
go build -trimpath -o "$work/dnsfence" ./cmd/dnsfence
[ "$fwd" = 1 ] && go build -trimpath -o "$work/fwdcost" ./scripts/fwdcost
[ -n "$PERF_KEEP" ] && cp "$work/dnsfence" "$PERF_KEEP/dnsfence"
knot_files "$work" "$KNOT_PORT"
"${cli[@]}" knotd -c "$work/knot.conf" 2> "$work/knot.log" & knot=$!; pids+=("$knot")
wait_for "$KNOT_PORT" probe.bench NOERROR "$knot" "$work/knot.log"
[ ${#cli[@]} -gt 0 ] && pin_knot "$knot" 1
dnsdist_conf "$work/dnsdist.conf" "$DIST_PORT" "$KNOT_PORT"
"${srv[@]}" dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" > "$work/dnsdist.log" 2>&1 & dist=$!; pids+=("$dist")
wait_for "$DIST_PORT" probe.bench NOERROR "$dist" "$work/dnsdist.log"
mkdir "$work/list"
awk 'BEGIN { for (i = 0; i < 10000; i++) printf "b%d.blocked.example\n", i }' > "$work/list/list.txt"

declare -A port pid
port[dnsdist]=$DIST_PORT pid[dnsdist]=$dist
p=$FIRST_PORT
for v in $VARIANTS; do
  yaml="YAML_$v" env_="ENV_$v" bin="BIN_$v" fwdmode="FWD_$v"
  if [ -n "${!fwdmode:-}" ]; then
    # shellcheck disable=SC2086 # ENV_<name> is a list of NAME=value words
    env ${!env_:-} "${srv[@]}" "$work/fwdcost" -mode "${!fwdmode}" -listen "127.0.0.1:$p" -upstream "127.0.0.1:$KNOT_PORT" 2> "$work/$v.log" & pid[$v]=$!; pids+=("${pid[$v]}")
    wait_for "$p" probe.bench NOERROR "${pid[$v]}" "$work/$v.log"
    port[$v]=$p p=$((p + 1))
    continue
  fi
  mkdir "$work/$v" # each config in a directory of its own (dnsfence watches it)
  cat > "$work/$v/dnsfence.yaml" <<YAML
listen: ["127.0.0.1:$p"]
upstreams: ["127.0.0.1:$KNOT_PORT"]
rate_limit: {client_qps: 0}
http: {listen: "127.0.0.1:$((p + 100))"}
log: {level: warn}
blocklists: [{name: l, path: "$work/list/list.txt"}]
${!yaml:-}
YAML
  # shellcheck disable=SC2086 # ENV_<name> is a list of NAME=value words
  env ${!env_:-} "${srv[@]}" "${!bin:-$work/dnsfence}" -config "$work/$v/dnsfence.yaml" 2> "$work/$v/log" & pid[$v]=$!; pids+=("${pid[$v]}")
  wait_for "$p" b0.blocked.example NXDOMAIN "${pid[$v]}" "$work/$v/log"
  port[$v]=$p p=$((p + 1))
done
# dnsdist caches knot's REFUSED for the list names (as in bench.sh's W1).
awk 'BEGIN { for (i = 0; i < 10000; i++) printf "b%d.blocked.example A\n", i }' > "$work/warm"
"${cli[@]}" dnsperf -s 127.0.0.1 -p "$DIST_PORT" -d "$work/warm" -n 1 -c 8 -q 100 > /dev/null 2>&1
if [ "$WORKLOAD" = mixed ]; then
  awk 'BEGIN { for (i = 0; i < 1000; i++) printf "c%d.bench A\n", i }' > "$work/warm"
  for s in dnsdist $VARIANTS; do
    "${cli[@]}" dnsperf -s 127.0.0.1 -p "${port[$s]}" -d "$work/warm" -n 1 -c 8 -q 100 > /dev/null 2>&1
  done
fi

utime() { awk '{ print $14 }' "/proc/$1/stat"; }
# collections SERVER: dnsfence's collections so far (empty for dnsdist and fwdcost).
collections() {
  [ -n "$CLUSTERS" ] && [ -d "$work/$1" ] || return 0
  curl -sf "http://127.0.0.1:$((port[$1] + 100))/metrics" | awk '/^go_gc_duration_seconds_count/ { print $2 }' || true
}
if [ "$RATE" = max ]; then
  n=$((200000 * DURATION)) load=(-q 100) # more names than a server answers in DURATION
else
  n=$((RATE * DURATION)) load=(-Q "$RATE" -v)
fi
echo "== $WORKLOAD at $RATE qps, ${DURATION}s per server, $ROUNDS rounds; latency in µs; CPU and knot in µs per query"
for r in $(seq "$ROUNDS"); do
  for s in dnsdist $VARIANTS; do
    case $WORKLOAD in
      blocked) awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "b%d.blocked.example A\n", i % 10000 }' ;;
      missed) awk -v n="$n" -v t="r$r-$s" 'BEGIN { for (i = 0; i < n; i++) printf "u%d.%s.bench A\n", i, t }' ;;
      mixed) awk -v n="$n" -v t="r$r-$s" 'BEGIN { for (i = 0; i < n; i++)
        if (i % 5 == 4) printf "u%d.%s.bench A\n", i, t; else printf "c%d.bench A\n", (i * 7) % 1000 }' ;;
    esac > "$work/queries"
    sp=${pid[$s]}
    gcs0=$(collections "$s")
    t0=$(ticks "$sp") u0=$(utime "$sp") s0=$(switches "$sp") k0=$(ticks "$knot")
    [ "$PERF" = 1 ] && { perf record -q "${perfg[@]}" -F "$PERF_HZ" -p "$sp" -o "$work/perf.data" 2> /dev/null & perfpid=$!; }
    "${cli[@]}" dnsperf -s 127.0.0.1 -p "${port[$s]}" -d "$work/queries" -c 8 -T 1 -t 2 -l "$DURATION" "${load[@]}" > "$work/out" 2>&1 || true
    t1=$(ticks "$sp") u1=$(utime "$sp") s1=$(switches "$sp") k1=$(ticks "$knot")
    perfcpu=""
    if [ "$PERF" = 1 ]; then
      kill -INT "$perfpid"; wait "$perfpid" 2> /dev/null || true
      perfcpu=$(perf report -i "$work/perf.data" --no-children -g none --sort dso --stdio -n 2> /dev/null | awk '/%/ { if ($3 ~ /kernel/) k += $2; else u += $2 } END { print u + 0, k + 0 }')
      [ -n "$PERF_KEEP" ] && cp "$work/perf.data" "$PERF_KEEP/$s-r$r.data"
    fi
    read -r p50 p90 p99 p999 max < <(percentiles "$work/out")
    answered=$(awk '/Queries completed:/ { print $3 }' "$work/out")
    qps=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$work/out")
    awk -v s="$s" -v r="$r" -v n="$answered" -v hz="$(getconf CLK_TCK)" -v t=$((t1 - t0)) -v u=$((u1 - u0)) \
      -v sw=$((s1 - s0)) -v k=$((k1 - k0)) -v l="$p50 $p90 $p99 $p999 $max" -v qps="$qps" -v pf="$perfcpu" -v phz="$PERF_HZ" 'BEGIN {
      split(l, x, " "); c = n ? 1e6 / hz / n : 0
      printf "%-10s round %d  p50 %5s  p90 %5s  p99 %5s  p99.9 %5s  max %5s  answered %d  qps %s  CPU %5.1f (user %4.1f)  switches %.2f  knot %4.1f",
        s, r, x[1], x[2], x[3], x[4], x[5], n, qps, t * c, u * c, n ? sw / n : 0, k * c
      pu = pk = 0
      if (pf != "") { split(pf, y, " "); pu = n ? y[1] * 1e6 / phz / n : 0; pk = n ? y[2] * 1e6 / phz / n : 0; printf "  perf user %4.1f kernel %4.1f", pu, pk }
      printf "\n"
      print s, x[1], x[3], x[4], t * c, qps, pu, pk > "/dev/stderr" }' 2>> "$work/rows"
    if [ -n "$CLUSTERS" ]; then
      gcs1=$(collections "$s")
      awk -v lim="$CLUSTERS" -v rate="$RATE" -v gc="$([ -n "$gcs0" ] && echo $((gcs1 - gcs0)) || echo -)" '
        /^> / && $2 != "T" && $NF * 1e6 > lim {
          split($3, a, "."); ms = (substr(a[1], 2) + 0) * 1000 / rate
          n++; if (ms < 20) first++; w[int(ms / 10)]++ }
        END { for (k in w) if (w[k] >= 10) big++
          printf "           slower than %d µs: %d, in the first 20 ms %d; 10 ms windows with 10 or more: %d; collections: %s\n",
            lim, n, first, big, gc }' "$work/out"
    fi
    sleep 1
  done
done
echo "== medians over the rounds (ratios: the server's median over dnsdist's)"
med() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v s="$1" -v c="$2" '$1 == s { print $c }' "$work/rows" | med; }
ratio() { awk -v a="$(col "$1" "$2")" -v b="$(col dnsdist "$2")" 'BEGIN { print b ? a / b : 0 }'; }
for s in dnsdist $VARIANTS; do
  if [ "$RATE" = max ]; then
    printf '%-10s qps %s (%.2f)  CPU %.1f (%.2f)\n' "$s" "$(col "$s" 6)" "$(ratio "$s" 6)" "$(col "$s" 5)" "$(ratio "$s" 5)"
  else
    printf '%-10s p50 %s  p99 %s (%.2f)  p99.9 %s  CPU %.1f (%.2f)' "$s" "$(col "$s" 2)" "$(col "$s" 3)" \
      "$(ratio "$s" 3)" "$(col "$s" 4)" "$(col "$s" 5)" "$(ratio "$s" 5)"
    [ "$PERF" = 1 ] && printf '  perf user %.1f (%.2f) kernel %.1f (%.2f)' "$(col "$s" 7)" "$(ratio "$s" 7)" "$(col "$s" 8)" "$(ratio "$s" 8)"
    printf '\n'
  fi
done
