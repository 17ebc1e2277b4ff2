package blocklist

import (
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// offHeap holds an index's region outside the Go heap where the system allows (an anonymous or
// file mapping on Unix), so the collector neither counts nor scans it. A list set is most of the live heap:
// on the heap, the default GOGC=100 lets the heap grow to twice the live size between
// collections, so a 34 MiB set made a 85 MiB process under load. Off the heap, the collector's
// headroom is proportional to what queries allocate, and a replaced set's memory returns to the
// system as soon as the set is unreachable (a cleanup unmaps it) rather than at the next GC.
//
// The memory lives exactly as long as the index that owns the offHeap: anything read from it that
// must outlive a call (a rule name returned by Match) is copied first.
type offHeap struct {
	regions map[unsafe.Pointer][]byte // by start address
	files   [][]byte                  // the regions mapped from files (see dropFilePages)
	size    atomic.Int64              // bytes mapped; read by tests while the cleanup may run
}

// newOffHeap returns an empty offHeap; attach ties its lifetime to its owner.
func newOffHeap() *offHeap {
	return &offHeap{regions: map[unsafe.Pointer][]byte{}}
}

// attach unmaps every region once owner is unreachable.
func (m *offHeap) attach(owner *index) {
	runtime.AddCleanup(owner, (*offHeap).freeAll, m)
}

// file maps the first n bytes of f read-only, or reads them onto the Go heap where mapping is not
// available. The mapping stays valid after f is closed, removed or replaced.
func (m *offHeap) file(f *os.File, n int) ([]byte, error) {
	b, err := mapFile(f, n)
	if err != nil {
		return nil, err
	}
	if b == nil {
		b = make([]byte, n)
		if _, err := f.ReadAt(b, 0); err != nil {
			return nil, err
		}
		return b, nil
	}
	m.regions[unsafe.Pointer(unsafe.SliceData(b))] = b
	m.files = append(m.files, b)
	m.size.Add(int64(n))
	return b, nil
}

// dropFilePages takes the pages of the regions mapped from files out of the process's memory:
// they are read-only and shared, so a read after it faults the same bytes back in from the page
// cache (or the file). For a replaced index that readers may still be finishing with: its pages
// leave the RSS at once rather than at the collection that unmaps it. Anonymous regions are
// left alone (dropping their pages would zero them).
func (m *offHeap) dropFilePages() {
	for _, b := range m.files {
		dropPages(b)
	}
}

// bytes returns a zeroed slice of length 0 and capacity n.
func (m *offHeap) bytes(n int) []byte {
	if p := m.alloc(n); p != nil {
		return unsafe.Slice((*byte)(p), n)[:0]
	}
	return make([]byte, 0, n)
}

// uint32s returns n zeroed uint32s with length 0.
func (m *offHeap) uint32s(n int) []uint32 {
	if p := m.alloc(4 * n); p != nil {
		return unsafe.Slice((*uint32)(p), n)[:0]
	}
	return make([]uint32, 0, n)
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

// freeAll unmaps every region; nothing may use them any more.
func (m *offHeap) freeAll() {
	for _, b := range m.regions {
		unmapMemory(b)
	}
	clear(m.regions)
	m.files = nil
	m.size.Store(0)
}
