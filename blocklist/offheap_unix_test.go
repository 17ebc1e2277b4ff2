//go:build unix

package blocklist

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestOffHeapFreedWithSet: a set's table lives outside the Go heap, and its memory is unmapped
// once the set is unreachable, while a set still in use keeps its own.
func TestOffHeapFreedWithSet(t *testing.T) {
	names := make([]string, 50000) // more than memIndexLimit: built through a file that is mapped
	for i := range names {
		names[i] = fmt.Sprintf("host-%d.example-%d.test", i, i%97)
	}
	build := func() *Set {
		b := newBuilder(16, 1)
		for _, n := range names {
			b.add(0, Block, []byte(n))
		}
		b.lists = append(b.lists, ListInfo{Name: "l"})
		return b.finish()
	}
	kept, dropped := build(), build()
	keptMem, droppedMem := kept.ix.mem, dropped.ix.mem
	if got := droppedMem.size.Load(); got < int64(len(names))*4 {
		t.Fatalf("%d bytes mapped for %d names: the index is not off the heap", got, len(names))
	}
	before := keptMem.size.Load()
	dropped = nil
	deadline := time.Now().Add(10 * time.Second)
	for droppedMem.size.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still mapped 10s after the set became unreachable", droppedMem.size.Load())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := keptMem.size.Load(); got != before {
		t.Errorf("the set in use has %d bytes mapped, had %d", got, before)
	}
	for _, n := range names[:1000] {
		if _, rule, ok := kept.Match("www." + n); !ok || rule != n {
			t.Fatalf("Match(www.%s) = %q, %v after another set was freed", n, rule, ok)
		}
	}
	runtime.KeepAlive(kept)
	_ = dropped
}
