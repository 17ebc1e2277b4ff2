#!/usr/bin/env bash
# Scale-out check, loopback only: dnsdist load-balances over three dnsfence instances that share
# one URL blocklist served by a local HTTP server (python3 -m http.server); scripts/loopdns is the
# upstream of all three. dnsperf sends a fixed rate through dnsdist for DURATION seconds; one
# instance is SIGKILLed at KILL_AT and restarted RESTART_AFTER seconds later; then the list is
# updated on the HTTP server (written aside, renamed) and every instance gets SIGHUP (which
# re-downloads URL lists with a conditional GET).
#
# PASS when:
#   - the client-visible failures (dnsperf's lost queries plus rcodes other than NOERROR and
#     NXDOMAIN) are at most QPS x the detection window (checkInterval 1s + checkTimeout 1s), and
#     were all sent around the kill (from 1 s before it to the detection window plus 1 s after;
#     dnsperf -v's lines are timestamped as they come out: a timeout is reported 2 s after the
#     query was sent, another failure its latency after);
#   - dnsdist marked the killed instance down, then up again after the restart;
#   - all three instances block the name added by the update (GET /api/check and a direct dig)
#     and serve the same number of entries from the list.
# Exits 1 on FAIL.
#
# Needs dnsdist, dnsperf, dig, curl, python3 (Debian: apt-get install dnsdist dnsperf dnsutils
# curl python3) and Go. Starts no system service. Usage: scripts/scaleout.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-30}
QPS=${QPS:-1000}
KILL_AT=${KILL_AT:-8}
RESTART_AFTER=${RESTART_AFTER:-4}
LB=127.0.0.1:15480 UP=127.0.0.1:15481 WEB_PORT=18480
FENCE_PORTS=(15482 15483 15484) HTTP_PORTS=(19282 19283 19284)
VICTIM=1        # index of the instance that is killed (fence2)
DETECT=2        # seconds: dnsdist's checkInterval (1) + checkTimeout (1)
NEW_NAME=added-in-v2.blocked.example

for t in "dnsdist dnsdist" "dnsperf dnsperf" "dig dnsutils" "curl curl" "python3 python3"; do
  read -r tool pkg <<<"$t"
  command -v "$tool" >/dev/null || { echo "scaleout: $tool not installed (apt-get install $pkg)" >&2; exit 2; }
done
command -v go >/dev/null || { echo "scaleout: go not found (Go 1.26 is needed to build dnsfence)" >&2; exit 2; }

work=$(mktemp -d)
pids=()
# shellcheck disable=SC2317  # called by the trap
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

go build -trimpath -o "$work/dnsfence" ./cmd/dnsfence
go build -o "$work/loopdns" ./scripts/loopdns
"$work/loopdns" -listen "$UP" & pids+=("$!")

# The list, version 1: 20,000 names. Version 2 adds NEW_NAME. Always replaced write-aside + rename.
mkdir -p "$work/www"
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "v1-%d.blocked.example\n", i }' > "$work/www/list.tmp"
mv "$work/www/list.tmp" "$work/www/list.txt"
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$WEB_PORT" 2> "$work/http.log" >&2 & pids+=("$!")
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$WEB_PORT/list.txt" && break; sleep 0.1; done

fence=()
start_fence() { # index
  local i=$1
  "$work/dnsfence" -config "$work/fence$i.yaml" 2>> "$work/fence$i.log" & fence[i]=$!; pids+=("$!")
}
for i in 0 1 2; do
  cat > "$work/fence$i.yaml" <<YAML
listen: ["127.0.0.1:${FENCE_PORTS[i]}"]
upstreams: ["$UP"]
rate_limit: {client_qps: 0}   # every query comes from dnsdist's address
http: {listen: "127.0.0.1:${HTTP_PORTS[i]}"}
log: {level: info}
blocklists: [{name: remote, url: "http://127.0.0.1:$WEB_PORT/list.txt", refresh: 1m}]
downloads: {cache_dir: "$work/cache$i"}
YAML
  start_fence "$i"
done
wait_fence() { # index
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:${HTTP_PORTS[$1]}/healthz" && return 0
    kill -0 "${fence[$1]}" 2>/dev/null || { echo "scaleout: fence$(($1 + 1)) died" >&2; cat "$work/fence$1.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "scaleout: fence$(($1 + 1)) not healthy after 10s" >&2; exit 1
}
for i in 0 1 2; do wait_fence "$i"; done

# dnsdist: no packet cache (every query reaches a backend), health checks every second with a name
# that dnsfence forwards to loopdns; its log lines get a timestamp to time the detection.
{
  echo "setLocal(\"$LB\")"
  echo 'setSecurityPollSuffix("")'
  for i in 0 1 2; do
    echo "newServer({address=\"127.0.0.1:${FENCE_PORTS[i]}\", name=\"fence$((i + 1))\", checkName=\"health.scaleout.example.\", checkInterval=1, checkTimeout=1000, mustResolve=true})"
  done
} > "$work/dnsdist.conf"
dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" \
  > >(while IFS= read -r line; do echo "$(now) $line"; done > "$work/dnsdist.log") 2>&1 & dist=$!; pids+=("$dist")
for _ in $(seq 100); do [ "$(grep -c "as 'up'" "$work/dnsdist.log" || true)" -ge 3 ] && break; sleep 0.1; done
dig +tries=1 +time=1 -p "${LB##*:}" @127.0.0.1 probe.allowed.example | grep -q 'status: NOERROR' || { echo "scaleout: dnsdist not answering" >&2; cat "$work/dnsdist.log" >&2; exit 1; }

# Load: two thirds allowed names (forwarded to loopdns), one third names of list version 1.
awk 'BEGIN { for (i = 0; i < 30000; i++) if (i % 3 == 0) printf "v1-%d.blocked.example A\n", i % 20000; else printf "host-%d.allowed.example A\n", i }' > "$work/queries"
t0=$(now)
stamp='import sys, time
for line in sys.stdin: sys.stdout.write("%.3f %s" % (time.time(), line))'
stdbuf -oL dnsperf -s 127.0.0.1 -p "${LB##*:}" -d "$work/queries" -l "$DURATION" -Q "$QPS" -c 4 -t 2 -v 2>&1 |
  python3 -u -c "$stamp" > "$work/dnsperf.stamped" & perf=$!; pids+=("$perf")
echo "scaleout: dnsdist $LB -> dnsfence ${FENCE_PORTS[*]}; dnsperf ${QPS} qps for ${DURATION}s through dnsdist"

sleep "$KILL_AT"
victim=fence$((VICTIM + 1))
kill -KILL "${fence[VICTIM]}"; t_kill=$(now); wait "${fence[VICTIM]}" 2>/dev/null || true
echo "scaleout: t=$(since "$t0" "$t_kill")s SIGKILL $victim"
sleep "$RESTART_AFTER"
start_fence "$VICTIM"; t_restart=$(now)
echo "scaleout: t=$(since "$t0" "$t_restart")s restarted $victim"
wait_fence "$VICTIM"
for _ in $(seq 50); do [ "$(grep -c "$victim.*as 'up'" "$work/dnsdist.log" || true)" -ge 2 ] && break; sleep 0.1; done

sleep 3
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "v1-%d.blocked.example\n", i }' > "$work/www/list.tmp"
echo "$NEW_NAME" >> "$work/www/list.tmp"
mv "$work/www/list.tmp" "$work/www/list.txt"; t_update=$(now)
for i in 0 1 2; do kill -HUP "${fence[i]}"; done
echo "scaleout: t=$(since "$t0" "$t_update")s list version 2 (adds $NEW_NAME) in place; SIGHUP to all three"
blocked() { curl -sf "http://127.0.0.1:${HTTP_PORTS[$1]}/api/check?name=$NEW_NAME" | grep -q '"blocked": *true'; }
deadline=$((SECONDS + 10)) took=""
for i in 0 1 2; do
  until blocked "$i" || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.1; done
  took="$took${took:+, }fence$((i + 1)) after $(since "$t_update" "$(now)")s"
done
# Record what each instance serves now, before anything else can make it download the list.
for i in 0 1 2; do
  curl -sf "http://127.0.0.1:${HTTP_PORTS[i]}/api/check?name=$NEW_NAME" | grep -o '"blocked": *[a-z]*' | tr -d ' ' > "$work/check$i" || true
  dig +tries=1 +time=1 -p "${FENCE_PORTS[i]}" @127.0.0.1 "$NEW_NAME" A | awk '/status:/ { sub(/,/, "", $6); print $6 }' > "$work/rcode$i"
  curl -sf "http://127.0.0.1:${HTTP_PORTS[i]}/metrics" | awk '/^dnsfence_blocklist_entries\{list="remote"\}/ { print $2 }' > "$work/entries$i"
done
echo "scaleout: t=$(since "$t0" "$(now)")s checked all instances (new name seen blocked: $took); SIGHUP again (list unchanged: conditional GET)"
for i in 0 1 2; do kill -HUP "${fence[i]}"; done
wait "$perf" || true
cut -d' ' -f2- "$work/dnsperf.stamped" > "$work/dnsperf.out"
for i in 0 1 2; do kill -0 "${fence[i]}" 2>/dev/null || { echo "scaleout: fence$((i + 1)) died" >&2; cat "$work/fence$i.log" >&2; exit 1; }; done

# --- results
sent=$(awk '/Queries sent:/ { print $3 }' "$work/dnsperf.out")
lost=$(awk '/Queries lost:/ { print $3 }' "$work/dnsperf.out")
qps=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$work/dnsperf.out")
rcodes=$(awk -F': *' '/Response codes:/ { print $2 }' "$work/dnsperf.out")
bad=$(awk '/^> / && $2 != "T" && $2 != "NOERROR" && $2 != "NXDOMAIN" { n++ } END { print n + 0 }' "$work/dnsperf.out")
failures=$((lost + bad)) bound=$((QPS * DETECT))
kill_s=$(since "$t0" "$t_kill")
# Send time of each failure, seconds after dnsperf started: a timeout is printed when it expires
# (2 s after sending), an answer with a bad rcode when it arrives (its latency after sending).
awk -v t0="$t0" '$2 == ">" && $3 != "NOERROR" && $3 != "NXDOMAIN" { printf "%.1f\n", $1 - t0 - ($3 == "T" ? 2 : $NF) }' \
  "$work/dnsperf.stamped" | sort -g > "$work/failtimes"
span=$(awk 'NR == 1 { min = $1 } { max = $1 } END { if (NR) print min, max; else print "none" }' "$work/failtimes")
down_at=$(awk -v v="$victim" '$0 ~ v && /as .down./ { print $1; exit }' "$work/dnsdist.log")
up_at=$(awk -v v="$victim" -v k="$t_kill" '$0 ~ v && /as .up./ && $1 > k { print $1; exit }' "$work/dnsdist.log")
downloads=$(awk '/GET \/list.txt/ { c[$(NF - 1)]++ } END { for (s in c) { printf "%s%d x %s", sep, c[s], s; sep = ", " } }' "$work/http.log")

echo
echo "== load through dnsdist: sent $sent, lost $lost, rcodes: $rcodes; achieved $qps qps"
echo "== kill of $victim at t=${kill_s}s: dnsdist marked it down $( [ -n "$down_at" ] && echo "$(since "$t_kill" "$down_at")s later" || echo never), up $( [ -n "$up_at" ] && echo "$(since "$t_restart" "$up_at")s after the restart" || echo never)"
if [ "$span" = none ]; then echo "== client-visible failures: 0"
else
  echo "== client-visible failures: $failures ($lost lost, $bad bad rcodes), sent between t=${span% *}s and t=${span#* }s"
  echo "   by second sent: $(awk '{ c[int($1)]++ } END { for (s in c) print s, c[s] }' "$work/failtimes" | sort -n | awk '{ printf "%st=%ss: %d", sep, $1, $2; sep = ", " }')"
fi
echo "== list downloads (HTTP status): $downloads"
status=0
verdict() { if [ "$1" = 0 ]; then echo "PASS  $2"; else echo "FAIL  $2"; status=1; fi; }
echo
verdict "$([ "$failures" -le "$bound" ] && echo 0 || echo 1)" "failures $failures <= $QPS qps x ${DETECT}s detection window = $bound"
if [ "$span" = none ]; then verdict 0 "no failure outside the kill window"
else
  verdict "$(awk -v s="$span" -v k="$kill_s" -v d="$DETECT" 'BEGIN { split(s, a, " "); exit !(a[1] >= k - 1 && a[2] <= k + d + 1) }' && echo 0 || echo 1)" \
    "failures sent within [kill-1s, kill+${DETECT}s+1s] = [$(awk -v k="$kill_s" 'BEGIN { print k - 1 }')s, $(awk -v k="$kill_s" -v d="$DETECT" 'BEGIN { print k + d + 1 }')s]"
fi
verdict "$([ -n "$down_at" ] && [ -n "$up_at" ] && echo 0 || echo 1)" "dnsdist took $victim out of rotation and back in"
for i in 0 1 2; do
  verdict "$([ "$(cat "$work/check$i")" = '"blocked":true' ] && [ "$(cat "$work/rcode$i")" = NXDOMAIN ] && echo 0 || echo 1)" \
    "fence$((i + 1)) blocks $NEW_NAME (/api/check: $(cat "$work/check$i"), dig: $(cat "$work/rcode$i"), list entries: $(cat "$work/entries$i"))"
done
verdict "$([ "$(sort -u "$work"/entries? | wc -l)" = 1 ] && echo 0 || echo 1)" "all three serve the same list version ($(sort -u "$work"/entries? | paste -sd/) entries)"
[ $status = 0 ] && echo "scaleout: PASS" || echo "scaleout: FAIL"
exit $status
