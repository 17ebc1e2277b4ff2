package resolver

// slab holds a cache shard's packed answers in chunks of pointer-free memory, so the collector
// neither scans them nor, since an entry's bookkeeping is pointer-free too, follows anything per
// entry: with answers as separate objects, a full cache (20,000 entries, three heap objects
// each) was most of what every collection marked, and on one core each collection delayed the
// answers given meanwhile.
//
// Records are kept in size classes, memcached style: a record takes a slot of the smallest class
// it fits, and a freed slot goes on its class's free list for the next record of that class.
// Records above the largest class (big answers over TCP) get a chunk of their own, dropped
// when they are freed. The memory of a class is kept until Flush; what the cache holds is
// bounded by its entries anyway.
type slab struct {
	chunks [][]byte
	spare  []uint32                     // indexes of dropped chunks, for reuse
	free   [len(slabClasses)][]slabSlot // freed slots by class
	tail   [len(slabClasses)]slabSlot   // the next slot not yet used in the class's last chunk
	size   int                          // bytes in chunks
}

// slabClasses are the slot sizes; a step of about 1.5x wastes at most a third of a slot.
var slabClasses = [...]uint32{64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096}

// hugeClass marks a record with a chunk of its own.
const hugeClass = uint8(len(slabClasses))

type slabSlot struct{ chunk, off uint32 }

// slabRef is where a record is: its slot, its length and its class.
type slabRef struct {
	slabSlot
	n     uint32
	class uint8
}

// chunkSize is the size of the chunks carved into slots of class c: a few slots for the big
// classes, 2 KiB for the small ones, so a shard that sees few answers of a class keeps little.
func chunkSize(c uint8) uint32 { return min(max(8*slabClasses[c], 2048), 32<<10) }

// alloc returns room for n bytes.
func (s *slab) alloc(n int) slabRef {
	c := uint8(0)
	for c < hugeClass && slabClasses[c] < uint32(n) {
		c++
	}
	r := slabRef{n: uint32(n), class: c}
	switch {
	case c == hugeClass:
		r.chunk, r.off = s.newChunk(uint32(n)), 0
	case len(s.free[c]) > 0:
		last := len(s.free[c]) - 1
		r.slabSlot, s.free[c] = s.free[c][last], s.free[c][:last]
	default:
		t := &s.tail[c]
		if t.off == 0 || t.off+slabClasses[c] > uint32(len(s.chunks[t.chunk])) {
			t.chunk, t.off = s.newChunk(chunkSize(c)), 0
		}
		r.slabSlot = *t
		t.off += slabClasses[c]
	}
	return r
}

func (s *slab) newChunk(n uint32) uint32 {
	s.size += int(n)
	b := make([]byte, n)
	if last := len(s.spare) - 1; last >= 0 {
		i := s.spare[last]
		s.spare = s.spare[:last]
		s.chunks[i] = b
		return i
	}
	s.chunks = append(s.chunks, b)
	return uint32(len(s.chunks) - 1)
}

// bytes returns the record's memory, valid until it is freed.
func (s *slab) bytes(r slabRef) []byte {
	return s.chunks[r.chunk][r.off : r.off+r.n : r.off+r.n]
}

// release gives the record's memory back.
func (s *slab) release(r slabRef) {
	if r.class == hugeClass {
		s.size -= len(s.chunks[r.chunk])
		s.chunks[r.chunk] = nil
		s.spare = append(s.spare, r.chunk)
		return
	}
	s.free[r.class] = append(s.free[r.class], r.slabSlot)
}

// reset drops every record and chunk.
func (s *slab) reset() { *s = slab{} }
