package blocklist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"unsafe"
)

// index is the compiled, immutable name store behind a Set: every name, label-reversed
// ("www.example.com" is stored as "com\x01example\x01www"), sorted, and front-coded in blocks of
// blockSize names, with a small sparse index of each block's first key.
//
// Reversing the labels makes the names below a domain one contiguous run that directly follows
// the domain itself (the separator 0x01 sorts before every name byte), so a lookup walks a query
// from its last label to its first and stops as soon as no stored name continues the prefix
// walked so far: a miss usually costs two or three block scans, whatever the number of labels.
//
// Sorted neighbours share most of their bytes (the TLD and the domain), so front coding stores
// about 8 of a name's 19.5 bytes on average; with two header bytes per name, a per-block list
// mask (one per name only where the masks differ) and 20 index bytes per block, the real
// 1.16M-name list takes 11.5 bytes a name, under half of the hash table it replaced (30.9), with
// no per-name pointer or hash slot.
//
// The whole index is one region in a fixed layout (see the header constants) that is either an
// anonymous mapping or a mapped file (the persisted index in the cache directory). Nothing may
// keep a pointer into it once the index is unreachable: the region is unmapped then.
type index struct {
	n      int      // names
	attrs  []attr   // the interned list masks; entries refer to them by position
	prefix []uint64 // per block: the first 16 bytes of its first key, as two big-endian numbers
	top    []uint64 // every topStride-th prefix pair, on the heap: a search's first steps stay in cache
	offs   []uint32 // per block: offset of the block in data
	data   []byte
	hash   [32]byte // the sources' content hash it was built from (persisted indexes)
	meta   []byte   // JSON: lists, expressions (see indexMeta)
	mem    *offHeap
	size   int // bytes of the region
	// tlds answers a walk's first step (its TLD) from a small map on the heap, rather than a
	// search through the whole index: every query makes that step.
	tlds map[string]tldInfo
}

// tldInfo is what lookup would return for a TLD: Block is where its names begin.
type tldInfo struct {
	Name        string
	Block       int
	Attr        uint16
	Found, More bool
}

func (ix *index) setTLDs(ts []tldInfo) {
	ix.tlds = make(map[string]tldInfo, len(ts))
	for _, t := range ts {
		ix.tlds[t.Name] = t
	}
}

// step is one step of a walk over a name's labels from the last: the key holds the labels so
// far, reversed (level 0: the TLD alone, answered from the TLD map); blk is where the previous
// step ended, from which a deeper search starts.
func (ix *index) step(key []byte, level, blk int) (a uint16, found, more bool, next int) {
	if level == 0 {
		return ix.lookupTLD(key)
	}
	return ix.lookup(key, blk, level >= 2)
}

// appendLabel adds label to the reversed key of klen bytes (after a separator unless it is the
// first) and returns the new length.
func appendLabel(key *[maxNameLen]byte, klen int, label []byte) int {
	if klen > 0 {
		key[klen] = sep
		klen++
	}
	return klen + copy(key[klen:], label)
}

// lookupTLD is lookup for a key of one label.
func (ix *index) lookupTLD(key []byte) (a uint16, found, more bool, blk int) {
	t, ok := ix.tlds[string(key)]
	if !ok {
		return 0, false, false, 0
	}
	return t.Attr, t.Found, t.More, t.Block
}

const (
	blockSize = 16   // names per block: a lookup decodes at most this many
	topStride = 64   // blocks per top entry: 9 KiB of top index for a million names
	sep       = 0x01 // label separator in keys: below every byte a name may hold
)

// Region layout: a header of headerSize bytes, then data, then (8-aligned) attrs, prefixes,
// offsets and the JSON meta. All integers are in the machine's byte order; the order mark in the
// header makes a file from a machine of the other order "foreign", so it is rebuilt.
const (
	indexMagic   = "DNSFIDX\x00"
	indexVersion = 3
	byteOrderTag = 0x0102030405060708
	headerSize   = 160
)

type indexHeader struct {
	Magic     [8]byte
	Order     uint64
	Version   uint32
	BlockSize uint32
	N         uint64
	Blocks    uint64
	Attrs     uint64
	DataOff   uint64
	DataLen   uint64
	AttrsOff  uint64
	PrefixOff uint64
	OffsOff   uint64
	MetaOff   uint64
	MetaLen   uint64
	Total     uint64
	Checksum  uint64 // CRC-32C of the region after the header, then of the header with this field 0
	Hash      [32]byte
	_         [8]byte
}

// The header's size is fixed by the format: these fail to compile if the struct drifts from it.
var (
	_ [headerSize - unsafe.Sizeof(indexHeader{})]byte
	_ [unsafe.Sizeof(indexHeader{}) - headerSize]byte
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errForeignIndex: a region that is not a valid index of this version (wrong magic, byte order,
// version, sizes or checksum). It is rebuilt, never trusted.
var errForeignIndex = errors.New("not a valid blocklist index")

// openIndex checks region and returns the index it holds. With body, the checksum of what
// follows the header, it checks the region's checksum, so that a truncated, corrupted or foreign
// file is rejected. The caller computes it from the file rather than through region: reading
// every page of the mapping would keep the whole index resident in the process (12.9 MiB for
// the 1.16M-name list) where the queries touch a fraction of it.
func openIndex(region []byte, mem *offHeap, body func() (uint32, error)) (*index, error) {
	if len(region) < headerSize || uintptr(unsafe.Pointer(unsafe.SliceData(region)))%8 != 0 {
		return nil, fmt.Errorf("%w: %d bytes", errForeignIndex, len(region))
	}
	var h indexHeader
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), headerSize), region)
	switch {
	case string(h.Magic[:]) != indexMagic:
		return nil, fmt.Errorf("%w: bad magic", errForeignIndex)
	case h.Order != byteOrderTag:
		return nil, fmt.Errorf("%w: other byte order", errForeignIndex)
	case h.Version != indexVersion || h.BlockSize != blockSize:
		return nil, fmt.Errorf("%w: version %d, block size %d", errForeignIndex, h.Version, h.BlockSize)
	case h.Total != uint64(len(region)):
		return nil, fmt.Errorf("%w: %d bytes, header says %d", errForeignIndex, len(region), h.Total)
	}
	if body != nil {
		sum, err := body()
		if err != nil {
			return nil, fmt.Errorf("read blocklist index: %w", err)
		}
		want := h.Checksum
		h.Checksum = 0
		sum = crc32.Update(sum, castagnoli, unsafe.Slice((*byte)(unsafe.Pointer(&h)), headerSize))
		h.Checksum = want
		if uint64(sum) != want {
			return nil, fmt.Errorf("%w: checksum mismatch", errForeignIndex)
		}
	}
	end := func(off, n, size uint64) bool { return off%8 == 0 && n <= h.Total && off <= h.Total-n*size }
	if h.DataOff != headerSize || !end(h.DataOff, h.DataLen, 1) || !end(h.AttrsOff, h.Attrs, 32) ||
		!end(h.PrefixOff, h.Blocks, 16) || !end(h.OffsOff, h.Blocks, 4) || h.MetaOff+h.MetaLen != h.Total ||
		h.Blocks != (h.N+blockSize-1)/blockSize || h.Attrs == 0 || h.DataLen >= 1<<32 {
		return nil, fmt.Errorf("%w: inconsistent sections", errForeignIndex)
	}
	at := func(off uint64) unsafe.Pointer { return unsafe.Pointer(&region[off]) }
	ix := &index{n: int(h.N), data: region[h.DataOff : h.DataOff+h.DataLen], hash: h.Hash, mem: mem}
	ix.attrs = unsafe.Slice((*attr)(at(h.AttrsOff)), h.Attrs)
	if h.Blocks > 0 {
		ix.prefix = unsafe.Slice((*uint64)(at(h.PrefixOff)), 2*h.Blocks)
		ix.offs = unsafe.Slice((*uint32)(at(h.OffsOff)), h.Blocks)
	}
	ix.meta = region[h.MetaOff:h.Total]
	ix.top = make([]uint64, 0, 2*((len(ix.offs)+topStride-1)/topStride))
	for b := 0; b < len(ix.offs); b += topStride {
		ix.top = append(ix.top, ix.prefix[2*b], ix.prefix[2*b+1])
	}
	for _, o := range ix.offs {
		if uint64(o) >= h.DataLen {
			return nil, fmt.Errorf("%w: block offset out of range", errForeignIndex)
		}
	}
	return ix, nil
}

// keyPrefix is the first 16 bytes of key as two big-endian numbers, zero-padded: pairs compare as
// the keys do, except that equal pairs need a full comparison. 16 bytes, because the first 8 are
// often the same TLD ("com\x01") and 3 or 4 more letters.
func keyPrefix(key []byte) (uint64, uint64) {
	var b [16]byte
	copy(b[:], key)
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// pairCmp compares prefix pairs: -1, 0 or 1.
func pairCmp(a0, a1, b0, b1 uint64) int {
	switch {
	case a0 != b0:
		if a0 < b0 {
			return -1
		}
		return 1
	case a1 != b1:
		if a1 < b1 {
			return -1
		}
		return 1
	}
	return 0
}

// firstKey returns block b's first key (its first entry is stored whole), without copying.
func (ix *index) firstKey(b int) []byte {
	d := ix.data[ix.offs[b]:]
	mode, k := binary.Uvarint(d)
	pos := k + 2
	if mode == 0 {
		_, k := binary.Uvarint(d[pos:])
		pos += k
	}
	return d[pos : pos+int(d[k+1])]
}

// lookup finds key. It searches from block from on (the keys of one walk increase, so each
// search starts at the block where the previous one ended, galloping if asked) and returns that
// block. more reports
// whether some stored key continues key with a separator: if not, no longer key of the walk can
// be stored.
func (ix *index) lookup(key []byte, from int, gallop bool) (a uint16, found, more bool, blk int) {
	nb := len(ix.offs)
	if nb == 0 {
		return 0, false, false, 0
	}
	k0, k1 := keyPrefix(key)
	le := func(b int) bool { // firstKey(b) <= key
		if c := pairCmp(ix.prefix[2*b], ix.prefix[2*b+1], k0, k1); c != 0 {
			return c < 0
		}
		return bytes.Compare(ix.firstKey(b), key) <= 0
	}
	lo, hi := from, nb-1
	if !gallop && hi-lo > topStride {
		// Bisect the top index first: it is small and contiguous, the prefixes are not.
		jlo, jhi := lo/topStride, hi/topStride
		for jlo < jhi {
			mid := int(uint(jlo+jhi+1) >> 1)
			c := pairCmp(ix.top[2*mid], ix.top[2*mid+1], k0, k1)
			if c < 0 || c == 0 && le(mid*topStride) {
				jlo = mid
			} else {
				jhi = mid - 1
			}
		}
		lo, hi = max(lo, jlo*topStride), min(hi, jlo*topStride+topStride-1)
	}
	if gallop {
		// Third and later steps of a walk: the key is usually in the same block or a near one (a
		// domain's names follow it), so gallop from there before bisecting: fewer, closer reads.
		// (Not for the second step: the names of a TLD spread over much of the index.)
		for step := 1; ; step <<= 1 {
			if lo+step > hi {
				break
			}
			if !le(lo + step) {
				hi = lo + step - 1
				break
			}
			lo += step
		}
	}
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		if le(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	blk = lo
	d := ix.data[ix.offs[lo]:]
	mode, pos := binary.Uvarint(d)
	count := min(blockSize, ix.n-lo*blockSize)
	// Front coding tells most comparisons without making them, and no key is rebuilt: m is how
	// many bytes the previous key shares with key, and that key is below key. A key sharing more
	// than m bytes with the previous one is below key too; one sharing fewer is above it; one
	// sharing exactly m equals key up to m, and only its stored rest is compared.
	m := 0
	for range count {
		p, sl, ea, next := entryHeader(d, pos, mode)
		pos = next
		if found {
			// The key after key: it continues key if it has key whole and then a separator.
			more = p == len(key) && sl > 0 && d[pos] == sep
			runtime.KeepAlive(ix)
			return a, found, more, blk
		}
		rest := d[pos : pos+sl]
		pos += sl
		if p > m {
			continue
		}
		if p < m { // above key, and apart from it before its end
			runtime.KeepAlive(ix)
			return a, found, false, blk
		}
		want := key[m:]
		j := 0
		for j < len(rest) && j < len(want) && rest[j] == want[j] {
			j++
		}
		switch {
		case j == len(want) && j == len(rest):
			a, found = ea, true
		case j == len(want): // key is a prefix of this key
			more = rest[j] == sep
			runtime.KeepAlive(ix)
			return a, found, more, blk
		case j < len(rest) && rest[j] > want[j]:
			runtime.KeepAlive(ix)
			return a, found, false, blk
		}
		m += j // this key is below key (or equal to it)
	}
	if lo+1 < nb {
		more = continues(ix.firstKey(lo+1), key)
	}
	runtime.KeepAlive(ix) // the scan read the region
	return a, found, more, blk
}

// continues reports whether k is key followed by a separator and more labels.
func continues(k, key []byte) bool {
	return len(k) > len(key) && k[len(key)] == sep && bytes.Equal(k[:len(key)], key)
}

// each calls fn with every name (in label order again, "www.example.com") and its attr index,
// in key order. The name is valid only during the call.
func (ix *index) each(fn func(name []byte, a uint16)) {
	var cur, name [maxNameLen + 1]byte
	for b := range ix.offs {
		d := ix.data[ix.offs[b]:]
		mode, pos := binary.Uvarint(d)
		for range min(blockSize, ix.n-b*blockSize) {
			p, sl, ea, next := entryHeader(d, pos, mode)
			pos = next
			copy(cur[p:], d[pos:pos+sl])
			pos += sl
			fn(unreverse(name[:0], cur[:p+sl]), ea)
		}
	}
	runtime.KeepAlive(ix)
}

// bytes is the memory the index holds.
func (ix *index) bytes() int { return ix.size }

// reverseName appends name's key: its labels in reverse order, joined by sep.
func reverseName(dst, name []byte) []byte {
	for end := len(name); ; {
		start := bytes.LastIndexByte(name[:end], '.') + 1
		dst = append(dst, name[start:end]...)
		if start == 0 {
			return dst
		}
		dst = append(dst, sep)
		end = start - 1
	}
}

// unreverse appends the name a key stands for.
func unreverse(dst, key []byte) []byte {
	for end := len(key); ; {
		start := bytes.LastIndexByte(key[:end], sep) + 1
		dst = append(dst, key[start:end]...)
		if start == 0 {
			return dst
		}
		dst = append(dst, '.')
		end = start - 1
	}
}

// entryHeader decodes the header of the entry at pos in a block of the given mode: how many bytes
// it shares with the previous key (p), the length of its stored rest (sl) and its attribute index
// (the block's own, unless mode is 0: then each entry carries one); next is where the rest starts.
func entryHeader(d []byte, pos int, mode uint64) (p, sl int, ea uint16, next int) {
	p, sl, next = int(d[pos]), int(d[pos+1]), pos+2
	if mode != 0 {
		return p, sl, uint16(mode - 1), next
	}
	ea, next = entryAttr(d, next)
	return p, sl, ea, next
}

// entryAttr reads the attribute index an entry of a mixed block carries (kept out of
// entryHeader so that the common case inlines into the lookup loop).
func entryAttr(d []byte, pos int) (ea uint16, next int) {
	v, k := binary.Uvarint(d[pos:])
	return uint16(v), pos + k
}
