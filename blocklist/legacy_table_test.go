package blocklist

import (
	"bytes"
	"hash/maphash"
)

// legacyTable is the open-addressing hash table the index replaced (on the heap here), kept only
// as the baseline of BenchmarkMatch and BenchmarkLoadBigReal.

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
type legacyTable struct {
	seed   maphash.Seed
	slots  []legacySlot
	n      int      // occupied slots
	chunks [][]byte // the arena; offset o is chunks[o>>chunkBits][o&chunkMask]
}

type legacySlot struct {
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
func newLegacyTable(hint int) *legacyTable {
	t := &legacyTable{seed: maphash.MakeSeed()}
	t.slots = make([]legacySlot, max(16, int(float64(hint)/maxLoad)+1))
	// Offset 0 means empty, so the arena starts with one unused byte.
	t.chunks = [][]byte{make([]byte, 1, chunkSize)}
	return t
}

func (t *legacyTable) hash(name []byte) (idx int, fp uint16) {
	h := maphash.Bytes(t.seed, name)
	// Multiply-shift maps the low half onto [0, len) without a power-of-two size, so the table
	// can be sized to the list rather than rounded up to twice it.
	return int((h & 0xffffffff) * uint64(len(t.slots)) >> 32), uint16(h >> 48)
}

// name returns the stored name at off, without copying.
func (t *legacyTable) name(off uint32) []byte {
	c := t.chunks[off>>chunkBits]
	i := off & chunkMask
	return c[i+1 : i+1+uint32(c[i])]
}

// find returns the slot index holding name, or -1.
func (t *legacyTable) find(name []byte) int {
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
			return i
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// insert returns the slot index holding name, storing the name with attribute attr if it is new.
// name must be a valid entry (at most maxNameLen bytes).
func (t *legacyTable) insert(name []byte, attr uint16) (idx int, added bool) {
	if float64(t.n+1) > maxLoad*float64(len(t.slots)) {
		t.grow()
	}
	i, fp := t.hash(name)
	for {
		s := &t.slots[i]
		if s.off == 0 {
			*s = legacySlot{off: t.store(name), fp: fp, attr: attr}
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
func (t *legacyTable) store(name []byte) uint32 {
	last := len(t.chunks) - 1
	c := t.chunks[last]
	if len(c)+1+len(name) > chunkSize {
		c = make([]byte, 0, chunkSize)
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
func (t *legacyTable) grow() {
	old := t.slots
	t.slots = make([]legacySlot, 2*len(old))
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

// match is Set.Match's old suffix walk, block rules only: one hash lookup per label.
func (t *legacyTable) match(name string) bool {
	var buf [maxNameLen]byte
	q, ok := lowerName(&buf, name)
	if !ok {
		return false
	}
	for i := 0; ; {
		if t.find(q[i:]) >= 0 {
			return true
		}
		dot := bytes.IndexByte(q[i:], '.')
		if dot < 0 {
			return false
		}
		i += dot + 1
	}
}
