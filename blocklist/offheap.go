package blocklist

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// offHeap holds a table's slots and arena outside the Go heap where the system allows (mmap on
// Unix), so the collector neither counts nor scans them. A list set is most of the live heap:
// on the heap, the default GOGC=100 lets the heap grow to twice the live size between
// collections, so a 34 MiB set made a 85 MiB process under load. Off the heap, the collector's
// headroom is proportional to what queries allocate, and a replaced set's memory returns to the
// system as soon as the set is unreachable (a cleanup unmaps it) rather than at the next GC.
//
// The memory lives exactly as long as the table that owns the offHeap: anything read from it that
// must outlive a call (a rule name returned by Match) is copied first.
type offHeap struct {
	regions map[unsafe.Pointer][]byte // by start address
	size    atomic.Int64              // bytes mapped; read by tests while the cleanup may run
}

// newOffHeap returns an empty offHeap whose regions are unmapped once owner is unreachable.
func newOffHeap(owner *table) *offHeap {
	m := &offHeap{regions: map[unsafe.Pointer][]byte{}}
	runtime.AddCleanup(owner, (*offHeap).freeAll, m)
	return m
}

// bytes returns a zeroed slice of length 0 and capacity n.
func (m *offHeap) bytes(n int) []byte {
	if p := m.alloc(n); p != nil {
		return unsafe.Slice((*byte)(p), n)[:0]
	}
	return make([]byte, 0, n)
}

// slots returns n zeroed slots.
func (m *offHeap) slots(n int) []slot {
	if p := m.alloc(n * int(unsafe.Sizeof(slot{}))); p != nil {
		return unsafe.Slice((*slot)(p), n)
	}
	return make([]slot, n)
}

func (m *offHeap) alloc(n int) unsafe.Pointer {
	if n == 0 {
		return nil
	}
	b := mapMemory(n)
	if b == nil {
		return nil
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	m.regions[p] = b
	m.size.Add(int64(n))
	return p
}

// free releases the region starting at p now, if it is one; the caller guarantees nothing uses it.
func (m *offHeap) free(p unsafe.Pointer) {
	if b, ok := m.regions[p]; ok {
		delete(m.regions, p)
		unmapMemory(b)
		m.size.Add(-int64(len(b)))
	}
}

// mapped reports whether p starts an off-heap region.
func (m *offHeap) mapped(p unsafe.Pointer) bool {
	_, ok := m.regions[p]
	return ok
}

func (m *offHeap) freeAll() {
	for _, b := range m.regions {
		unmapMemory(b)
	}
	clear(m.regions)
	m.size.Store(0)
}
