# Helpers shared by the benchmark scripts (sourced, not run).

# ticks PID: CPU time (utime + stime, all threads) of a process, in clock ticks (getconf CLK_TCK).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# switches PID: voluntary and involuntary context switches of all the threads of a process.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ { n += $2 } END { print n }'; }

# percentile P FILE: the P-th percentile (nearest rank) of the answered queries' latencies, in
# ms with three decimals (dnsperf -v gives microseconds), from the output of `dnsperf -v`; "-"
# if none was answered.
percentile() {
  awk '/^> / && $2 != "T" { print $NF * 1000 }' "$2" | sort -g | awk -v p="$1" '
    { a[NR] = $1 }
    END { if (!NR) { print "-"; exit } r = NR * p / 100; i = int(r); if (i < r) i++; printf "%.3f", a[i] }'
}

# percentiles FILE: p50, p90, p99 and p99.9 (nearest rank) and the maximum of the answered
# queries' latencies in microseconds, from the output of `dnsperf -v`, as "p50 p90 p99 p999 max".
percentiles() {
  awk '/^> / && $2 != "T" { printf "%.0f\n", $NF * 1e6 }' "$1" | sort -g | awk '
    function at(p,  r, i) { r = NR * p / 100; i = int(r); if (i < r) i++; return a[i] }
    { a[NR] = $1 }
    END { if (!NR) { print "- - - - -"; exit } print at(50), at(90), at(99), at(99.9), a[NR] }'
}

# dnsdist_conf FILE PORT UPSTREAM_PORT: a dnsdist config on 127.0.0.1@PORT forwarding to
# 127.0.0.1@UPSTREAM_PORT with a packet cache; no console, no webserver, no security poll.
# temporaryFailureTTL keeps knot's REFUSED for names outside bench. cached for the whole run.
dnsdist_conf() {
  cat > "$1" <<LUA
setLocal("127.0.0.1:$2")
setSecurityPollSuffix("")
newServer({address="127.0.0.1:$3", checkName="health.bench.", checkInterval=1})
getPool(""):setCache(newPacketCache(100000, {temporaryFailureTTL=3600}))
LUA
}

# knot_files DIR PORT: the config (DIR/knot.conf) and zone of a knot serving bench. (a wildcard A
# and AAAA) on 127.0.0.1@PORT, with its run and storage directory DIR/knot.
knot_files() {
  mkdir -p "$1/knot"
  cat > "$1/knot/bench.zone" <<'ZONE'
$ORIGIN bench.
$TTL 3600
@    SOA  ns.bench. hostmaster.bench. 1 3600 600 86400 60
@    NS   ns.bench.
ns   A    192.0.2.53
*    A    192.0.2.1
*    AAAA 2001:db8::1
ZONE
  cat > "$1/knot.conf" <<KNOT
server:
    rundir: "$1/knot"
    listen: 127.0.0.1@$2
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "$1/knot/knot.sock"
database:
    storage: "$1/knot"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$1/knot"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: bench.
    file: "bench.zone"
KNOT
}

# pin_knot PID CPU: knot pins its UDP worker threads to CPUs itself (the first to CPU 0), whatever
# taskset said: put every thread on CPU, or it shares CPU 0 with the server under test and
# preempts it on every query forwarded (one knot thread ran 33,000 times a second there).
pin_knot() {
  taskset -a -p -c "$2" "$1" > /dev/null
  for t in /proc/"$1"/task/*; do
    grep -q "^Cpus_allowed_list:[[:space:]]*$2\$" "$t/status" || { echo "bench: knot thread ${t##*/} not on CPU $2" >&2; exit 1; }
  done
}

# query PORT NAME: the RCODE of an A query for NAME at 127.0.0.1:PORT (empty if none came).
query() { dig +tries=1 +time=1 -p "$1" @127.0.0.1 "$2" A 2>/dev/null | awk '/status:/ { sub(/,/, "", $6); print $6 }'; }

# wait_for PORT NAME RCODE PID LOG: wait up to 60 s until NAME gets RCODE at PORT; exit with LOG
# if process PID dies meanwhile.
wait_for() {
  for _ in $(seq 600); do
    [ "$(query "$1" "$2")" = "$3" ] && return 0
    kill -0 "$4" 2>/dev/null || { echo "bench: server on port $1 died:" >&2; cat "$5" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: no $3 for $2 on port $1 after 60s" >&2; cat "$5" >&2; exit 1
}
