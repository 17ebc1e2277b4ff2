package blocklist

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildPaced: a paced build (a reload) yields through each of its long phases: hashing the
// source, parsing, sorting and spilling runs, merging them. A phase without ticks would hold the
// only P of a single-core machine for tens of milliseconds while queries wait.
func TestBuildPaced(t *testing.T) {
	const n = 60000
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "host-%d.example-%d.test\n", i, i%89)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	src := []Source{{Name: "l", Path: path}}
	count := func(t *testing.T, run func(p *pacer)) int {
		t.Helper()
		p := newPacer()
		p.every, p.sleep = 0, 0 // yield at every check, so that the count follows the work
		run(p)
		return p.yields
	}
	if got := count(t, func(p *pacer) {
		if _, err := sourcesHash(src, p); err != nil {
			t.Fatal(err)
		}
	}); got < 2 {
		t.Errorf("hashing %d bytes yielded %d times", sb.Len(), got)
	}
	parseOnly := count(t, func(p *pacer) {
		b := newBuilder(0, 1)
		b.pace = p
		for i := range n {
			b.add(0, Block, fmt.Appendf(nil, "host-%d.example-%d.test", i, i%89))
		}
		b.release()
	})
	full := count(t, func(p *pacer) {
		s, failed := build(src, nil, nil, buildOptions{dir: dir, pace: p})
		if len(failed) > 0 || s.Len() != n {
			t.Fatalf("build: %d names, %v", s.Len(), failed)
		}
	})
	// Parsing ticks once a name; sorting (n log n compares), spilling and merging add more.
	if want := n / paceCheck; parseOnly < want {
		t.Errorf("parsing %d names yielded %d times, want %d", n, parseOnly, want)
	}
	if full < 3*parseOnly {
		t.Errorf("a paced build yielded %d times, parsing alone %d: the sort does not yield", full, parseOnly)
	}
	// The first load is not paced.
	b := newBuilder(0, 1)
	if b.pace != nil {
		t.Error("a builder paces by default")
	}
}
