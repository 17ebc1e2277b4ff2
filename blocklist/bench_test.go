package blocklist

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// realDir holds the real lists; BLOCKLIST_DATA overrides it (a worktree outside /work/main).
var realDir = cmp.Or(os.Getenv("BLOCKLIST_DATA"), "../../shared/data/blocklists") + "/"

// naiveSet is the baseline the issue names: a Go map of names with the same suffix walk.
type naiveSet map[string]struct{}

func (m naiveSet) match(name string) bool {
	var buf [maxNameLen]byte
	q, ok := lowerName(&buf, name)
	if !ok {
		return false
	}
	for i := 0; ; {
		if _, found := m[string(q[i:])]; found {
			return true
		}
		dot := bytes.IndexByte(q[i:], '.')
		if dot < 0 {
			return false
		}
		i += dot + 1
	}
}

// BenchmarkMatch compares set sizes (1k, 100k, 1M), the compact Set (the front-coded index), the
// hash table it replaced (legacy-table) and the naive map.
func BenchmarkMatch(b *testing.B) {
	for _, size := range []int{1_000, 100_000, 1_000_000} {
		entries := make([]string, size)
		for i := range entries {
			entries[i] = "d" + strconv.Itoa(i) + ".example" + strconv.Itoa(i%97) + ".com"
		}
		compact := setOf("gen", entries)
		naive := make(naiveSet, size)
		legacy := newLegacyTable(size)
		for _, e := range entries {
			naive[e] = struct{}{}
			legacy.insert([]byte(e), 0)
		}
		const nq = 1024
		hits, misses := make([]string, nq), make([]string, nq)
		for i := range nq {
			n := i * (size / nq)
			hits[i] = "WWW.cdn.d" + strconv.Itoa(n) + ".Example" + strconv.Itoa(n%97) + ".com."
			misses[i] = "www.cdn.x" + strconv.Itoa(n) + ".example" + strconv.Itoa(n%97) + ".com."
		}
		for _, impl := range []struct {
			name  string
			match func(string) bool
		}{
			{"compact", func(q string) bool { _, _, ok := compact.Match(q); return ok }},
			{"legacy-table", legacy.match},
			{"naive-map", naive.match},
		} {
			for _, c := range []struct {
				name    string
				queries []string
				want    bool
			}{{"hit", hits, true}, {"miss", misses, false}} {
				b.Run(fmt.Sprintf("%s/entries=%d/%s", impl.name, size, c.name), func(b *testing.B) {
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						if ok := impl.match(c.queries[i%nq]); ok != c.want {
							b.Fatalf("match(%q) = %v", c.queries[i%nq], ok)
						}
						i++
					}
				})
			}
		}
	}
}

// BenchmarkLoadBigReal loads the 1.16M-domain real list into the compact Set and into the naive
// map, and reports the load time (ns/op) and the heap each keeps alive after GC.
func BenchmarkLoadBigReal(b *testing.B) {
	path := realDir + "big-real.txt"
	if _, err := os.Stat(path); err != nil {
		b.Skipf("real list not available (../shared is absent): %v", err)
	}
	b.Run("compact", func(b *testing.B) {
		src := []Source{{Name: "big", Path: path}}
		var s *Set
		measureHeap(b, func() (int, int) {
			s = nil // let the previous Set go before building the next
			var err error
			if s, _, err = Load(src); err != nil {
				b.Fatal(err)
			}
			return s.Len(), s.Bytes()
		})
		runtime.KeepAlive(s)
	})
	b.Run("legacy-table", func(b *testing.B) {
		var t *legacyTable
		measureHeap(b, func() (int, int) {
			t = nil
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			t = newLegacyTable(1_156_535) // sized by counting lines, as the old build did
			if _, err := scan(f, path, func(_ Kind, v []byte, _ int) { t.insert(v, 0) }); err != nil {
				b.Fatal(err)
			}
			return t.n, 0
		})
		runtime.KeepAlive(t)
	})
	b.Run("naive-map", func(b *testing.B) {
		var m naiveSet
		measureHeap(b, func() (int, int) {
			m = nil
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			m = naiveSet{}
			if _, err := scan(f, path, func(_ Kind, v []byte, _ int) { m[string(v)] = struct{}{} }); err != nil {
				b.Fatal(err)
			}
			return len(m), 0
		})
		runtime.KeepAlive(m)
	})
}

// measureHeap runs load b.N times and reports entries and the memory kept after the last run:
// the live heap after GC plus what load reports it holds off the heap.
func measureHeap(b *testing.B, load func() (entries, offHeap int)) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, off := 0, 0
	for b.Loop() {
		n, off = load()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	b.ReportMetric(float64(n), "entries")
	b.ReportMetric(heap/(1<<20), "heap-MiB")
	b.ReportMetric(float64(off)/(1<<20), "offheap-MiB")
	b.ReportMetric((heap+float64(off))/float64(n), "B/entry")
}

// BenchmarkMatchBigReal looks up names of the real 1.16M-name list (hits, one label below a listed
// name) and names that share a listed name's TLD and most of its labels but are not listed
// (misses), in the compact Set and in the hash table it replaced.
func BenchmarkMatchBigReal(b *testing.B) {
	path := realDir + "big-real.txt"
	data, err := os.ReadFile(path)
	if err != nil {
		b.Skipf("real list not available (../shared is absent): %v", err)
	}
	s, _, err := Load([]Source{{Name: "big", Path: path}})
	if err != nil {
		b.Fatal(err)
	}
	legacy := newLegacyTable(s.Len())
	var names []string
	if _, err := scan(bytes.NewReader(data), path, func(_ Kind, v []byte, _ int) {
		legacy.insert(v, 0)
		names = append(names, string(v))
	}); err != nil {
		b.Fatal(err)
	}
	data = nil
	const nq = 4096
	hits, misses := make([]string, nq), make([]string, nq)
	for i := range nq {
		n := names[i*(len(names)/nq)]
		hits[i] = "www." + n
		// Change the label left of the TLD: "a.b.com" -> "a.zzqb.com".
		dot := strings.LastIndexByte(n, '.')
		prev := strings.LastIndexByte(n[:max(dot, 0)], '.') + 1
		misses[i] = "www." + n[:prev] + "zzq" + n[prev:]
	}
	names = nil
	for _, impl := range []struct {
		name  string
		match func(string) bool
	}{
		{"compact", func(q string) bool { _, _, ok := s.Match(q); return ok }},
		{"legacy-table", legacy.match},
	} {
		for _, c := range []struct {
			name    string
			queries []string
			want    bool
		}{{"hit", hits, true}, {"miss", misses, false}} {
			b.Run(impl.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if ok := impl.match(c.queries[i%nq]); ok != c.want && c.want {
						b.Fatalf("match(%q) = %v", c.queries[i%nq], ok)
					}
					i++
				}
			})
		}
	}
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
		st, err := scan(bytes.NewReader(data), "hosts-sample.txt", func(Kind, []byte, int) {})
		if err != nil || st.Rules == 0 {
			b.Fatalf("Parse: %d rules, %v", st.Rules, err)
		}
	}
}

// setOf builds a one-list Set of block rules without files.
func setOf(list string, names []string) *Set {
	b := newBuilder(len(names), 1)
	for _, n := range names {
		b.add(0, Block, []byte(n))
	}
	b.lists = append(b.lists, ListInfo{Name: list})
	return b.finish()
}
