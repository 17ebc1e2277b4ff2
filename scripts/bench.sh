#!/usr/bin/env bash
# Throughput and latency of dnsfence against dnsdist, measured in the same run, loopback only.
# knot serves the zone bench. (a wildcard A and AAAA) as the authoritative upstream of both;
# dnsfence loads the big blocklist; dnsdist is a plain forwarder with a packet cache and no list.
# The servers run on CPU 0, dnsperf and knot on CPU 1 (so CPU 0 is the server under test alone;
# knot re-pins its UDP worker to CPU 0 itself, so every knot thread is moved back once it is up).
#
# Workloads, each run ROUNDS times against each server, alternating which goes first:
#   W1  A queries for names sampled from the list. dnsfence answers them itself (NXDOMAIN);
#       dnsdist forwards them to knot once, gets REFUSED (not knot's zone) and caches that, so
#       for dnsdist W1 is all packet-cache hits after the warm-up.
#   W2  50% list names, 50% a fixed set of 1,000 names under bench. (cache-hot for both once
#       the warm-up has passed them through).
#   W3  names under bench. that are never repeated (u<N>.<run>.bench, a fresh <run> for every run:
#       max or fixed rate, round and server): every query is a cache miss.
# Max-throughput runs: dnsperf -c CLIENTS -T 1 -q OUTSTANDING (dnsperf has CPU 1 to itself but
# for knot: one thread; 100 queries outstanding keep either server busy, while more overflow the
# default 208 KiB socket buffers and lose queries for both, which measures the kernel instead).
# Fixed-rate runs (W1, W2, W3 at each rate of RATES, FIXED_DURATION seconds each, half DURATION
# by default so that the whole bench stays under ~10 minutes): dnsperf -Q rate -v; p99 is computed
# from the per-query latencies of the answered queries (Debian's dnsperf 2.10 has no latency
# histogram option). A rate is lowered to half the slower server's measured maximum for that
# workload if it would be above 75% of it (RATE_CAP=0 keeps it), so the percentile measures service
# time rather than an overflowing queue; a rate already run for the workload is not rerun.
#
# Needs dnsperf, knot, dnsdist, taskset, dig (Debian: apt-get install dnsperf knot dnsdist
# util-linux dnsutils) and Go, and the list at ../shared/data/blocklists/big-real.txt (or
# LIST=path, one domain per line). Starts no system service: every daemon gets its own config,
# port and runtime directory in a temporary work dir.
# Usage: scripts/bench.sh   (ROUNDS=3 DURATION=10 FIXED_DURATION=5 (DURATION/2) RATES="5000 20000"
#                           SAMPLE=10000 UNIQUE=2000000; RATE=n is short for RATES=n;
#                           FENCE_YAML='limits: {udp_blocking_reads: false}' adds lines to dnsfence's config)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/benchlib.sh
PATH=$PATH:/usr/sbin:/sbin   # knotd is in /usr/sbin

LIST=${LIST:-../shared/data/blocklists/big-real.txt}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
RATES=${RATES:-${RATE:-5000 20000}}
FIXED_DURATION=${FIXED_DURATION:-$(( (DURATION + 1) / 2 ))}
RATE_CAP=${RATE_CAP:-1}
SAMPLE=${SAMPLE:-10000}
UNIQUE=${UNIQUE:-2000000}
CLIENTS=${CLIENTS:-8}
OUTSTANDING=${OUTSTANDING:-100}
FENCE_PORT=15473 DIST_PORT=15474 KNOT_PORT=15475 HTTP=127.0.0.1:19273

need() { command -v "$1" >/dev/null || { echo "bench: $1 not installed (apt-get install $2)" >&2; exit 2; }; }
need dnsperf dnsperf; need knotd knot; need dnsdist dnsdist; need taskset util-linux; need dig dnsutils
command -v go >/dev/null || { echo "bench: go not found (Go 1.26 is needed to build dnsfence)" >&2; exit 2; }
[ -r "$LIST" ] || { echo "bench: $LIST not readable" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

if [ "$(nproc)" -ge 2 ]; then
  srv_pin=(taskset -c 0) cli_pin=(taskset -c 1) pinning="servers on CPU 0; dnsperf and knot on CPU 1"
else
  echo "bench: WARNING: only $(nproc) CPU: not pinning, servers and dnsperf share it" >&2
  srv_pin=() cli_pin=() pinning="none (1 CPU)"
fi

echo "== machine"
echo "cpus: $(nproc) ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
echo "kernel: $(uname -sr)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $(dnsperf -h 2>&1 | awk '/^Version/ { print "dnsperf " $2 }'), $(dnsdist --version | head -1 | cut -d' ' -f1-2), $(knotd --version | awk '{ print "knot " $NF }'), $(go version | cut -d' ' -f3)"

# --- knot: the authoritative upstream, zone bench. only.
knot_files "$work" "$KNOT_PORT"
"${cli_pin[@]}" knotd -c "$work/knot.conf" 2> "$work/knot.log" & knot=$!; pids+=("$knot")

# --- dnsfence: the big list, upstream knot, no rate limit.
go build -trimpath -o "$work/dnsfence" ./cmd/dnsfence
entries=$(wc -l < "$LIST")
# The config gets a directory of its own: dnsfence watches the config's directory, and the
# dnsperf output written next to it would wake the watcher for every line (it did: ~20% of
# dnsfence's CPU at a fixed rate).
mkdir -p "$work/fence"
cat > "$work/fence/dnsfence.yaml" <<YAML
listen: ["127.0.0.1:$FENCE_PORT"]
upstreams: ["127.0.0.1:$KNOT_PORT"]
rate_limit: {client_qps: 0}
http: {listen: "$HTTP"}
log: {level: warn}
blocklists: [{name: big, path: "$(realpath "$LIST")"}]
${FENCE_YAML:-}
YAML
"${srv_pin[@]}" "$work/dnsfence" -config "$work/fence/dnsfence.yaml" 2> "$work/dnsfence.log" & fence=$!; pids+=("$fence")

# --- dnsdist: forwarder to knot with a packet cache (benchlib.sh's dnsdist_conf).
dnsdist_conf "$work/dnsdist.conf" "$DIST_PORT" "$KNOT_PORT"
"${srv_pin[@]}" dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" > "$work/dnsdist.log" 2>&1 & dist=$!; pids+=("$dist")

# Wait for each to answer (dnsfence serves only once the list is loaded).
first=$(grep -m1 -E '^[a-z0-9._-]+$' "$LIST")
wait_for "$KNOT_PORT" probe.bench NOERROR "$knot" "$work/knot.log"
[ ${#cli_pin[@]} -gt 0 ] && pin_knot "$knot" 1
wait_for "$FENCE_PORT" "$first" NXDOMAIN "$fence" "$work/dnsfence.log"
wait_for "$FENCE_PORT" probe.bench NOERROR "$fence" "$work/dnsfence.log"
wait_for "$DIST_PORT" probe.bench NOERROR "$dist" "$work/dnsdist.log"
echo "list: $LIST ($entries lines); $first: dnsfence $(query "$FENCE_PORT" "$first"), dnsdist $(query "$DIST_PORT" "$first") (from knot, then cached)"

# --- query files
grep -E '^[a-z0-9._-]+$' "$LIST" | awk -v n="$entries" -v s="$SAMPLE" 'BEGIN { step = int(n / s); if (step < 1) step = 1 }
  NR % step == 0 && c < s { print $1 " A"; c++ }' | shuf --random-source=<(yes) > "$work/w1"
awk 'NR == FNR { hot[++h] = $0; next } { print; print hot[(FNR - 1) % h + 1] }' \
  <(awk 'BEGIN { for (i = 0; i < 1000; i++) printf "h%d.bench A\n", i }') "$work/w1" > "$work/w2"
gen_w3() { awk -v t="$1" -v n="$2" 'BEGIN { for (i = 0; i < n; i++) printf "u%d.%s.bench A\n", i, t }' > "$work/w3"; }

port_of() { if [ "$1" = dnsfence ]; then echo "$FENCE_PORT"; else echo "$DIST_PORT"; fi; }
pid_of() { if [ "$1" = dnsfence ]; then echo "$fence"; else echo "$dist"; fi; }
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# run WORKLOAD MODE SERVER ROUND FILE RATE: one dnsperf run (MODE max, or q<requested rate> at
# a fixed RATE); appends a row to $work/results:
# workload mode server round qps avg_ms p99_ms lost sent cpu% cpu_us_per_answer
run() {
  local w=$1 mode=$2 srv=$3 round=$4 file=$5 rate=$6 out="$work/out.$1.$2.$3.$4" pid t0 t1 args p99
  pid=$(pid_of "$srv")
  args=(-s 127.0.0.1 -p "$(port_of "$srv")" -d "$file" -c "$CLIENTS" -T 1 -t 2)
  if [ "$mode" = max ]; then args+=(-l "$DURATION" -q "$OUTSTANDING"); else args+=(-l "$FIXED_DURATION" -Q "$rate" -v); fi
  t0=$(ticks "$pid")
  "${cli_pin[@]}" dnsperf "${args[@]}" > "$out" 2>&1 || { echo "bench: dnsperf failed:" >&2; tail "$out" >&2; exit 1; }
  t1=$(ticks "$pid")
  kill -0 "$pid" 2>/dev/null || { echo "bench: $srv died" >&2; exit 1; }
  p99=$(percentile 99 "$out")
  awk -v w="$w" -v m="$mode" -v s="$srv" -v r="$round" -v p99="$p99" -v cpu_s="$(( t1 - t0 ))/$hz" '
    /Queries sent:/ { sent = $3 } /Queries lost:/ { lost = $3 } /Queries per second:/ { qps = $4 }
    /Average Latency/ { avg = $4 * 1000 }
    /Run time \(s\):/ { secs = $4 }
    END { split(cpu_s, c, "/"); cpu = c[1] / c[2]; done = sent - lost
      printf "%s %s %s %s %.0f %.2f %s %d %d %.0f %.1f\n", w, m, s, r, qps, avg, p99, lost, sent,
        100 * cpu / secs, (done > 0 ? 1e6 * cpu / done : 0) }' "$out" >> "$work/results"
}

# Alternate the order each round so drift in the machine's load hits both servers alike.
rounds() { # workload mode file-or-generator rate
  local r srv order n tag
  for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="dnsfence dnsdist"; else order="dnsdist dnsfence"; fi
    for srv in $order; do
      if [ "$3" = gen_w3 ]; then
        # The tag makes every run's names new to both caches; a fixed-rate run gets a second
        # of headroom over the queries it can send.
        if [ "$2" = max ]; then n=$UNIQUE tag="r$r-$srv"; else n=$(( $4 * (FIXED_DURATION + 1) )) tag="$2-r$r-$srv"; fi
        gen_w3 "$tag" "$n"; run "$1" "$2" "$srv" "$r" "$work/w3" "$4"
        awk -v n="$n" 'END { if ($9 > n) print "bench: WARNING: W3 " $2 " sent " $9 " queries to " $3 ", more than its " n " unique names: names repeated (cache hits)" }' "$work/results" >&2
      else run "$1" "$2" "$srv" "$r" "$3" "$4"; fi
      sleep 1
    done
  done
  echo "$1.$2 $(rss_mib "$fence") $(rss_mib "$dist")" >> "$work/rss"
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (!NR) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v w="$1" -v m="$2" -v s="$3" -v c="$4" '$1 == w && $2 == m && $3 == s && $c != "-" { print $c }' "$work/results"; }
# Per-round ratios dnsfence/dnsdist of column c, then their median.
ratio() {
  paste <(awk -v w="$1" -v m="$2" -v c="$3" '$1 == w && $2 == m && $3 == "dnsfence" { print $4, $c }' "$work/results" | sort -n) \
        <(awk -v w="$1" -v m="$2" -v c="$3" '$1 == w && $2 == m && $3 == "dnsdist" { print $4, $c }' "$work/results" | sort -n) |
    awk '$2 != "-" && $4 != "-" && $4 > 0 { print $2 / $4 }' | median
}
sum() { awk '{ s += $1 } END { print s + 0 }'; }

echo "== warm-up: one pass of W2's $(wc -l < "$work/w2") names through each server (fills dnsdist's cache)"
for srv in dnsfence dnsdist; do
  "${cli_pin[@]}" dnsperf -s 127.0.0.1 -p "$(port_of "$srv")" -d "$work/w2" -n 1 -c "$CLIENTS" -q "$OUTSTANDING" -t 2 > "$work/warm.$srv" 2>&1
done
echo "== max throughput: $ROUNDS rounds x ${DURATION}s per server and workload, dnsperf -c $CLIENTS -T 1 -q $OUTSTANDING -t 2; pinning: $pinning"
rounds W1 max "$work/w1" 0
rounds W2 max "$work/w2" 0
rounds W3 max gen_w3 0

# $work/rates: workload mode rate, one line per fixed-rate run set, in the order run.
touch "$work/rates"
for want in $RATES; do
  for w in W1 W2 W3; do
    rate=$want
    slower=$(for s in dnsfence dnsdist; do col "$w" max "$s" 5 | median; done | sort -g | head -1)
    if [ "$RATE_CAP" = 1 ] && awk -v r="$rate" -v m="$slower" 'BEGIN { exit !(r > 0.75 * m) }'; then
      rate=$(awk -v m="$slower" 'BEGIN { printf "%d", int(m / 200) * 100 }'); [ "$rate" -ge 100 ] || rate=100
      echo "== $w fixed rate: $want qps is above 75% of the slower server's maximum here ($slower qps): using $rate qps (RATE_CAP=0 forces $want)"
    fi
    if awk -v w="$w" -v r="$rate" '$1 == w && $3 == r { found = 1 } END { exit !found }' "$work/rates"; then
      echo "== $w at $rate qps was run already: skipping"; continue
    fi
    if [ "$w" = W3 ]; then file=gen_w3; else file="$work/$(tr 'W' 'w' <<<"$w")"; fi
    echo "$w q$want $rate" >> "$work/rates"
    echo "== fixed rate: $w at $rate qps, $ROUNDS rounds x ${FIXED_DURATION}s per server, dnsperf -Q $rate -v"
    rounds "$w" "q$want" "$file" "$rate"
  done
done

# --- report
desc() { case $1 in W1) echo "W1 list names";; W2) echo "W2 50% list, 50% 1k hot";; W3) echo "W3 unique names (misses)";; esac; }
printf '\n== results (medians of %d rounds of %ss at max load, %ss at a fixed rate; CPU = the server CPU time over the run, per second and per answered query; RSS after the workload)\n\n' "$ROUNDS" "$DURATION" "$FIXED_DURATION"
echo "| workload | load | server | qps | avg ms | p99 ms | lost/sent | CPU % | CPU µs/query | RSS MiB |"
echo "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"
fmt() { awk -v d="$1" '{ if ($1 == "-") print "-"; else printf "%.*f\n", d, $1 }'; }
while read -r w mode rate; do
  if [ "$mode" = max ]; then load=max; else load="$rate qps"; fi
  for srv in dnsfence dnsdist; do
    rss=$(awk -v k="$w.$mode" -v s="$srv" '$1 == k { print (s == "dnsfence" ? $2 : $3) }' "$work/rss")
    printf '| %s | %s | %s | %s | %s | %s | %s/%s | %s | %s | %s |\n' "$(desc "$w")" "$load" "$srv" \
      "$(col "$w" "$mode" "$srv" 5 | median | fmt 0)" "$(col "$w" "$mode" "$srv" 6 | median | fmt 2)" \
      "$(col "$w" "$mode" "$srv" 7 | median | fmt 3)" "$(col "$w" "$mode" "$srv" 8 | sum)" "$(col "$w" "$mode" "$srv" 9 | sum)" \
      "$(col "$w" "$mode" "$srv" 10 | median | fmt 0)" "$(col "$w" "$mode" "$srv" 11 | median | fmt 0)" "$rss"
  done
  q=$(ratio "$w" "$mode" 5 | fmt 2) a=$(ratio "$w" "$mode" 6 | fmt 2) p=$(ratio "$w" "$mode" 7 | fmt 2)
  if [ "$mode" = max ]; then q="**$q**"; else p="**$p**"; fi   # the figure each kind of run is for
  rssr=$(awk -v k="$w.$mode" '$1 == k && $3 > 0 { printf "%.2f", $2 / $3 }' "$work/rss")
  printf '| %s | %s | ratio dnsfence/dnsdist | %s | %s | %s | | %s | %s | %s |\n' "$(desc "$w")" "$load" "$q" "$a" "$p" \
    "$(ratio "$w" "$mode" 10 | fmt 2)" "$(ratio "$w" "$mode" 11 | fmt 2)" "$rssr"
done < <(printf '%s max 0\n' W1 W2 W3; cat "$work/rates")
cat <<NOTE

Ratios are medians of the per-round ratios (rounds alternate which server goes first). In W1 dnsdist
answers from its packet cache (knot's REFUSED for names outside bench., cached), so W1 compares
dnsfence's list lookup with a cache hit; in W2 dnsdist answers all from cache while dnsfence forwards
half to knot; in W3 both forward every query (at a fixed rate too: each run has names of its own).
lost/sent is summed over the rounds; p99 is over the answered queries of the fixed-rate runs, whose
load column is the rate used (lower than asked when the slower server's maximum was too close).
A server CPU % well below 100 at max load means something else was the limit (dnsperf and knot
share CPU 1; other work on the machine), so there the qps ratio understates the gap; at max load
CPU µs/query (the server's CPU time per answered query) does not depend on which side limited the
run (at a fixed rate it also counts the cost of waking up for each query). The machine is shared
and noisy: compare the ratios, not the absolute figures.
NOTE
