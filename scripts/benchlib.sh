# Helpers shared by the benchmark scripts (sourced, not run).

# ticks PID: CPU time (utime + stime, all threads) of a process, in clock ticks (getconf CLK_TCK).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# percentile P FILE: the P-th percentile (nearest rank) of the answered queries' latencies, in
# ms with two decimals, from the output of `dnsperf -v`; "-" if none was answered.
percentile() {
  awk '/^> / && $2 != "T" { print $NF * 1000 }' "$2" | sort -g | awk -v p="$1" '
    { a[NR] = $1 }
    END { if (!NR) { print "-"; exit } r = NR * p / 100; i = int(r); if (i < r) i++; printf "%.2f", a[i] }'
}
