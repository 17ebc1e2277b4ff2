package blocklist

import (
	"hash/maphash"
	"runtime"
	"unsafe"
)

// table is the compact store behind a Set: an open-addressing hash table of 8-byte slots whose
// names live in an arena of fixed-size chunks.
//
// Memory: one byte of length plus the name in the arena, and 8 bytes per slot at a load of at
// most 0.8, about 30 bytes per entry for a typical list where a Go map[string]struct{} needs
// ~90 (string header, bucket overhead, a separate allocation per name). Chunks (rather than one
// growing slice) mean the arena is never copied while a list loads, so loading never holds two
// copies of it, and a name never moves once stored.
//
// A slot keeps 16 bits of the hash beside the arena offset, so a probe reads the arena only when
// those bits agree: a miss costs one slot read per probe, and a hit one name comparison.
type table struct {
	seed   maphash.Seed
	slots  []slot
	n      int      // occupied slots
	chunks [][]byte // the arena; offset o is chunks[o>>chunkBits][o&chunkMask]
	mem    *offHeap // where slots and chunks are, freed once the table is unreachable
}

type slot struct {
	off  uint32 // arena offset of the name's length byte; 0 marks an empty slot
	fp   uint16 // high bits of the name's hash
	attr uint16 // index into the Set's attribute table
}

const (
	chunkBits = 20 // 1 MiB chunks: small enough that the last one wastes little
	chunkSize = 1 << chunkBits
	chunkMask = chunkSize - 1
	maxLoad   = 0.8
)

// newTable sizes the table for about hint names.
func newTable(hint int) *table {
	t := &table{seed: maphash.MakeSeed()}
	t.mem = newOffHeap(t)
	t.slots = t.mem.slots(max(16, int(float64(hint)/maxLoad)+1))
	// Offset 0 means empty, so the arena starts with one unused byte.
	t.chunks = [][]byte{t.mem.bytes(chunkSize)[:1]}
	return t
}

func (t *table) hash(name []byte) (idx int, fp uint16) {
	h := maphash.Bytes(t.seed, name)
	// Multiply-shift maps the low half onto [0, len) without a power-of-two size, so the table
	// can be sized to the list rather than rounded up to twice it.
	return int((h & 0xffffffff) * uint64(len(t.slots)) >> 32), uint16(h >> 48)
}

// name returns the stored name at off, without copying.
func (t *table) name(off uint32) []byte {
	c := t.chunks[off>>chunkBits]
	i := off & chunkMask
	return c[i+1 : i+1+uint32(c[i])]
}

// nameString returns a copy of the stored name at off: the arena may be unmapped once the table
// is unreachable, so no string may point into it.
func (t *table) nameString(off uint32) string {
	s := string(t.name(off))
	runtime.KeepAlive(t)
	return s
}

// find returns the slot index holding name, or -1.
func (t *table) find(name []byte) int {
	if len(name) > maxNameLen || t.n == 0 {
		return -1
	}
	i, fp := t.hash(name)
	for {
		s := &t.slots[i]
		if s.off == 0 {
			return -1
		}
		if s.fp == fp && string(t.name(s.off)) == string(name) {
			runtime.KeepAlive(t) // the comparison read the arena
			return i
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// insert returns the slot index holding name, storing the name with attribute attr if it is new.
// name must be a valid entry (at most maxNameLen bytes).
func (t *table) insert(name []byte, attr uint16) (idx int, added bool) {
	if float64(t.n+1) > maxLoad*float64(len(t.slots)) {
		t.grow()
	}
	i, fp := t.hash(name)
	for {
		s := &t.slots[i]
		if s.off == 0 {
			*s = slot{off: t.store(name), fp: fp, attr: attr}
			t.n++
			return i, true
		}
		if s.fp == fp && string(t.name(s.off)) == string(name) {
			return i, false
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// store appends name to the arena and returns its offset.
func (t *table) store(name []byte) uint32 {
	last := len(t.chunks) - 1
	c := t.chunks[last]
	if len(c)+1+len(name) > chunkSize {
		c = t.mem.bytes(chunkSize)
		t.chunks = append(t.chunks, c)
		last++
	}
	off := uint32(last)<<chunkBits | uint32(len(c))
	c = append(c, byte(len(name)))
	t.chunks[last] = append(c, name...)
	return off
}

// grow doubles the slots; names stay where they are in the arena. Only a table being built grows,
// so the old slots can be freed at once.
func (t *table) grow() {
	old := t.slots
	defer t.mem.free(unsafe.Pointer(unsafe.SliceData(old)))
	t.slots = t.mem.slots(2 * len(old))
	for _, s := range old {
		if s.off == 0 {
			continue
		}
		i, _ := t.hash(t.name(s.off))
		for t.slots[i].off != 0 {
			if i++; i == len(t.slots) {
				i = 0
			}
		}
		t.slots[i] = s
	}
}

// trim returns the spare capacity of the last chunk once loading is done. A mapped chunk's
// unwritten pages take no memory, so only a chunk on the heap is copied.
func (t *table) trim() {
	last := len(t.chunks) - 1
	if c := t.chunks[last]; !t.mem.mapped(unsafe.Pointer(unsafe.SliceData(c))) && cap(c)-len(c) > len(c)/8 {
		t.chunks[last] = append([]byte(nil), c...)
	}
}

// bytes is the memory the table holds (the unwritten tail of a mapped chunk takes none).
func (t *table) bytes() int {
	n := len(t.slots) * int(unsafe.Sizeof(slot{}))
	for _, c := range t.chunks {
		if t.mem.mapped(unsafe.Pointer(unsafe.SliceData(c))) {
			n += len(c)
		} else {
			n += cap(c)
		}
	}
	return n
}
