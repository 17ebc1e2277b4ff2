package blocklist

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
)

const realDir = "../../shared/data/blocklists/"

// BenchmarkMatch compares a small and a large set: Match does one lookup per
// label, so the per-op figures should stay close (a large map only costs
// more cache misses).
func BenchmarkMatch(b *testing.B) {
	for _, size := range []int{1_000, 1_000_000} {
		entries := make([]string, size)
		for i := range entries {
			entries[i] = "d" + strconv.Itoa(i) + ".example" + strconv.Itoa(i%97) + ".com"
		}
		s := newSet([]Source{{Name: "gen"}}, []parsed{{entries: entries}})
		const nq = 1024
		hits, misses := make([]string, nq), make([]string, nq)
		for i := range nq {
			n := i * (size / nq)
			hits[i] = "WWW.cdn.d" + strconv.Itoa(n) + ".Example" + strconv.Itoa(n%97) + ".com."
			misses[i] = "www.cdn.x" + strconv.Itoa(n) + ".example" + strconv.Itoa(n%97) + ".com."
		}
		for _, c := range []struct {
			name    string
			queries []string
			want    bool
		}{{"hit", hits, true}, {"miss", misses, false}} {
			b.Run(fmt.Sprintf("entries=%d/%s", size, c.name), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, _, ok := s.Match(c.queries[i%nq]); ok != c.want {
						b.Fatalf("Match(%q) = %v", c.queries[i%nq], ok)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkLoadBigReal loads the 1.16M-domain real list and reports the heap
// the resulting Set keeps alive.
func BenchmarkLoadBigReal(b *testing.B) {
	path := realDir + "big-real.txt"
	if _, err := os.Stat(path); err != nil {
		b.Skipf("real list not available: %v", err)
	}
	src := []Source{{Name: "big", Path: path}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var s *Set
	for b.Loop() {
		s = nil // let the previous Set go before building the next
		var err error
		if s, _, err = Load(src); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(s.Len()), "entries")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(s.Len()), "heap-B/entry")
	runtime.KeepAlive(s)
}

// BenchmarkParseHosts parses the 50k-line hosts-format sample.
func BenchmarkParseHosts(b *testing.B) {
	data, err := os.ReadFile(realDir + "hosts-sample.txt")
	if err != nil {
		b.Skipf("sample not available: %v", err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		entries, _, err := Parse(bytes.NewReader(data), "hosts-sample.txt")
		if err != nil || len(entries) == 0 {
			b.Fatalf("Parse: %d entries, %v", len(entries), err)
		}
	}
}
