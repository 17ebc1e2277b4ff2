// Package heapfloor lets the Go heap grow to a floor before it is collected, and above the
// floor behaves like the default GOGC=100 (a collection when the heap reaches twice what was
// live).
//
// The block lists are kept off the Go heap (see blocklist's offHeap), so the heap itself is a
// few megabytes and the default GOGC=100 collects it at 4 MB: every half second at 5,000 qps.
// On one core each cycle stretched the answers given meanwhile. Scratch runs (dnsperf at 5,000
// qps, the 1.16M list, one core): p99 14 ms with GOGC=100, 4.2 ms with a 10 MiB floor (RSS 53 ->
// 59 MiB), 4.2-4.7 ms with 12 or 16 MiB. A floor rather than a larger fixed GOGC keeps memory
// bounded once the response cache is full: GOGC=200 then took RSS to 72 MiB.
//
// After every collection GOGC is set so that the next goal is max(floor, 2×live). A memory limit
// (GOMEMLIMIT) would do the same more directly, but it counts all of the runtime's memory, and
// when live data approach it the collector runs back to back: it did, with a full cache.
// GOGC or GOMEMLIMIT set in the environment win: the floor is not used.
package heapfloor

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// heapFloor is one applied floor, updated after every collection until stopped.
type heapFloor struct {
	floor      int64
	stopped    atomic.Bool
	oldPercent int // restored by stop
}

const (
	maxPercent = 10000   // bounds GOGC whatever the floor
	minHeap    = 4 << 20 // the runtime's minimum heap goal at GOGC=100
)

// Start applies a floor of floorMB MiB; stop restores the previous GOGC. It does nothing (and
// stop nothing) for floorMB <= 0 or when GOGC or GOMEMLIMIT is set.
func Start(floorMB int) (stop func()) {
	if floorMB <= 0 || os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	f := &heapFloor{floor: int64(floorMB) << 20}
	f.oldPercent = debug.SetGCPercent(f.percent())
	f.arm()
	return func() {
		if !f.stopped.Swap(true) {
			debug.SetGCPercent(f.oldPercent)
		}
	}
}

// gcSentinel is collected by every GC cycle, which runs the cleanup that re-arms it: a callback
// after each collection. It has a pointer so that it is not a tiny allocation (those may share a
// block with live data and never be collected).
type gcSentinel struct{ _ *int }

func (f *heapFloor) arm() {
	runtime.AddCleanup(&gcSentinel{}, func(f *heapFloor) {
		if !f.stopped.Load() {
			f.update()
			f.arm()
		}
	}, f)
}

// percent is the GOGC that puts the next collection at max(floor, 2×live). GOGC applies to the
// live heap plus the goroutine stacks and globals the collector scans, so those count too; and
// the runtime's minimum heap, 4 MiB × GOGC/100, is the floor itself while the heap is small.
func (f *heapFloor) percent() int {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	metrics.Read(s)
	var v [3]int64
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = int64(min(s[i].Value.Uint64(), math.MaxInt64/maxPercent))
		}
	}
	live := max(v[0], 1<<20) // 0 before the first collection
	p := min(f.floor*100/minHeap, (f.floor-live)*100/(live+v[1]+v[2]))
	return int(min(maxPercent, max(100, p)))
}

func (f *heapFloor) update() {
	if p := f.percent(); !f.stopped.Load() {
		debug.SetGCPercent(p)
	}
}
