package blocklist

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"unsafe"
)

// builder turns rules into a Set without ever holding the lists twice: rules are collected as
// label-reversed keys in runs of at most runLimit bytes; a full run is sorted and spilled to a
// temporary file, and compile merges the runs straight into the front-coded index, written to a
// file that is then mapped. A reload therefore needs the old Set plus about runLimit of heap,
// rather than a second full copy of the names (the table this replaced doubled the process).
type builder struct {
	dir     string // spill and index files go here; "" is os.TempDir()
	run     []byte // the current run: records keyLen, key, list, kind
	recs    []uint32
	spill   *os.File
	spillW  *bufio.Writer
	spilled int64
	runs    [][2]int64 // offset and length of each spilled run
	memRuns [][]byte   // sorted runs kept on the heap when no spill file can be made
	regexps []regexRule
	lists   []ListInfo
	nlists  int
	runMax  int      // runLimit; tests set less to merge many runs
	records int      // added, all runs
	scratch *offHeap // run and recs: off the heap, so a build leaves no garbage behind
	pace    *pacer   // nil: never yields
	err     error
}

// runLimit bounds the heap a build uses for names: 2 MiB is about 90,000 names.
const runLimit = 2 << 20

// memIndexLimit: smaller sets are built in memory, larger ones through files.
const memIndexLimit = 1 << 20

func newBuilder(_, nlists int) *builder {
	return &builder{nlists: nlists, runMax: runLimit}
}

// grow makes room for a run before its first record: the run and its offsets are mapped at their
// full size at once (pages cost memory only once written), instead of growing on the heap.
func (b *builder) grow() {
	if b.scratch == nil {
		b.scratch = newOffHeap()
	}
	b.run = b.scratch.bytes(b.runMax + maxNameLen + 3)
	b.recs = b.scratch.uint32s(b.runMax/4 + 1) // a record takes at least 4 bytes
}

// release frees the scratch memory; the builder holds no run after it.
func (b *builder) release() {
	b.run, b.recs = nil, nil
	if b.scratch != nil {
		b.scratch.freeAll()
	}
}

func (b *builder) add(list int, k Kind, v []byte) {
	if k == Regexp || k == AllowRegexp {
		re, err := compileRule(string(v)) // the parser checked it compiles
		if err == nil {
			b.regexps = append(b.regexps, regexRule{list: list, kind: k, re: re, expr: string(v), rule: formatRule(k, string(v))})
		}
		return
	}
	if len(v) == 0 || len(v) > maxNameLen {
		return
	}
	b.pace.tick()
	if b.run == nil {
		b.grow()
	}
	b.records++
	b.recs = append(b.recs, uint32(len(b.run)))
	b.run = append(b.run, byte(len(v)))
	b.run = reverseName(b.run, v)
	b.run = append(b.run, byte(list), byte(k))
	if len(b.run) >= b.runMax {
		b.flushRun()
	}
}

func (b *builder) recKey(o uint32) []byte { return b.run[o+1 : o+1+uint32(b.run[o])] }

func (b *builder) sortRun() {
	// A run's sort is tens of milliseconds: it yields too (a tick is a counter, next to a compare).
	slices.SortFunc(b.recs, func(x, y uint32) int {
		b.pace.tick()
		return bytes.Compare(b.recKey(x), b.recKey(y))
	})
}

// flushRun sorts the current run and moves it to the spill file (or the heap, if no file can be
// made: the build then still works, only with more memory).
func (b *builder) flushRun() {
	if len(b.recs) == 0 {
		return
	}
	b.sortRun()
	if b.spill == nil && b.err == nil {
		f, err := os.CreateTemp(b.dir, ".dnsfence-runs-*")
		if err == nil {
			_ = os.Remove(f.Name()) // the open file is all we need
			b.spill, b.spillW = f, bufio.NewWriterSize(f, 64<<10)
		}
	}
	// A sorted run is front-coded (shared length, rest length, list, kind, rest): it takes less
	// than half the bytes, which matters where the temporary directory is in memory (tmpfs).
	var mem []byte
	if b.spill == nil {
		mem = make([]byte, 0, len(b.run)/2)
	}
	start := b.spilled
	var prev []byte
	var rec [maxNameLen + 4]byte
	for _, o := range b.recs {
		b.pace.tick()
		key := b.recKey(o)
		p := 0
		for p < len(prev) && p < len(key) && prev[p] == key[p] {
			p++
		}
		end := o + 1 + uint32(len(key))
		r := append(append(rec[:0], byte(p), byte(len(key)-p), b.run[end], b.run[end+1]), key[p:]...)
		prev = key
		if b.spill != nil {
			if _, err := b.spillW.Write(r); err != nil && b.err == nil {
				b.err = fmt.Errorf("spill blocklist run: %w", err)
			}
			b.spilled += int64(len(r))
		} else {
			mem = append(mem, r...)
		}
	}
	if b.spill != nil {
		b.runs = append(b.runs, [2]int64{start, b.spilled - start})
	} else {
		b.memRuns = append(b.memRuns, mem)
	}
	b.run, b.recs = b.run[:0], b.recs[:0]
}

// discard drops what the builder holds, for a build started over.
func (b *builder) discard() {
	if b.spill != nil {
		b.spill.Close()
	}
	b.release()
	*b = builder{runMax: b.runMax}
}

// copyList adds the rules list from had in old as list to.
func (b *builder) copyList(old *Set, from, to int) {
	bit := uint64(1) << from
	old.ix.each(func(name []byte, ai uint16) {
		a := old.attrs[ai]
		for _, km := range [...]struct {
			k Kind
			m uint64
		}{{Block, a.block}, {BlockBelow, a.below}, {Allow, a.allow}, {AllowBelow, a.allowBelow}} {
			if km.m&bit != 0 {
				b.add(to, km.k, name)
			}
		}
	})
	for _, r := range old.regexps {
		if r.list == from {
			r.list = to
			b.regexps = append(b.regexps, r)
		}
	}
}

// runReader reads one sorted run's records: front-coded (spilled, or on the heap), or the
// current run through its sorted offsets.
type runReader struct {
	br   *bufio.Reader
	mem  []byte
	run  []byte
	recs []uint32
	buf  [maxNameLen]byte
	hdr  [4]byte // a field: a local would escape through io.ReadFull
	k    []byte  // the current record
	list int
	kind Kind
	err  error
}

func (r *runReader) next() bool {
	switch {
	case r.br != nil:
		h := r.hdr[:]
		if _, err := io.ReadFull(r.br, h); err != nil {
			if err != io.EOF {
				r.err = fmt.Errorf("read blocklist run: %w", err)
			}
			return false
		}
		p, sl := int(h[0]), int(h[1])
		if _, err := io.ReadFull(r.br, r.buf[p:p+sl]); err != nil {
			r.err = fmt.Errorf("read blocklist run: %w", err)
			return false
		}
		r.k, r.list, r.kind = r.buf[:p+sl], int(h[2]), Kind(h[3])
	case r.recs != nil:
		if len(r.recs) == 0 {
			return false
		}
		o := r.recs[0]
		r.recs = r.recs[1:]
		end := o + 1 + uint32(r.run[o])
		r.k, r.list, r.kind = r.run[o+1:end], int(r.run[end]), Kind(r.run[end+1])
	default:
		if len(r.mem) == 0 {
			return false
		}
		p, sl := int(r.mem[0]), int(r.mem[1])
		copy(r.buf[p:], r.mem[4:4+sl])
		r.k, r.list, r.kind = r.buf[:p+sl], int(r.mem[2]), Kind(r.mem[3])
		r.mem = r.mem[4+sl:]
	}
	return true
}

func (r *runReader) key() []byte { return r.k }

type runHeap []*runReader

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return bytes.Compare(h[i].key(), h[j].key()) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// compile merges the runs into the index and returns the Set. If path is not empty the index is
// also kept there (written aside, synced and renamed), for the next start to map.
func (b *builder) compile(path string, hash [32]byte) (*Set, error) {
	defer func() {
		if b.spill != nil {
			b.spill.Close()
		}
		b.release()
	}()
	var readers []*runReader
	if b.spill != nil {
		b.flushRun() // everything goes through the file once it exists
		if err := b.spillW.Flush(); err != nil {
			return nil, fmt.Errorf("spill blocklist run: %w", err)
		}
		for _, r := range b.runs {
			readers = append(readers, &runReader{br: bufio.NewReaderSize(io.NewSectionReader(b.spill, r[0], r[1]), 32<<10)})
		}
	} else {
		b.sortRun()
		readers = append(readers, &runReader{run: b.run, recs: b.recs})
	}
	if b.err != nil {
		return nil, b.err
	}
	size := b.spilled + int64(len(b.run))
	for _, m := range b.memRuns {
		readers = append(readers, &runReader{mem: m})
		size += int64(len(m))
	}

	enc := newEncoder(len(b.lists), b.records)
	var out *os.File
	var mem *bytes.Buffer
	var w *bufio.Writer
	if size >= memIndexLimit || path != "" {
		dir := b.dir
		if path != "" {
			dir = filepath.Dir(path)
		}
		f, err := os.CreateTemp(dir, ".dnsfence-index-*")
		if err == nil {
			out = f
			defer func() {
				out.Close()
				_ = os.Remove(out.Name()) // gone if renamed; the mapping stays valid
			}()
			w = bufio.NewWriterSize(f, 64<<10)
		} else if path != "" {
			return nil, fmt.Errorf("blocklist index: %w", err)
		}
	}
	if out == nil {
		mem = &bytes.Buffer{}
		w = bufio.NewWriter(mem)
	}
	enc.w = w
	if _, err := w.Write(make([]byte, headerSize)); err != nil {
		return nil, fmt.Errorf("write blocklist index: %w", err)
	}

	h := runHeap{}
	for _, r := range readers {
		if r.next() {
			h = append(h, r)
		} else if r.err != nil {
			return nil, r.err
		}
	}
	heap.Init(&h)
	var cur []byte
	var curAttr attr
	curOwner, have := 0, false
	for len(h) > 0 {
		b.pace.tick()
		r := h[0]
		key, list, kind := r.key(), r.list, r.kind
		if !have || !bytes.Equal(key, cur) {
			if have {
				enc.add(cur, curAttr, curOwner)
			}
			cur, curAttr, curOwner, have = append(cur[:0], key...), attr{}, list, true
		}
		curAttr.set(kind, 1<<list)
		curOwner = min(curOwner, list)
		if r.next() {
			heap.Fix(&h, 0)
		} else {
			if r.err != nil {
				return nil, r.err
			}
			heap.Pop(&h)
		}
	}
	if have {
		enc.add(cur, curAttr, curOwner)
	}
	b.release()
	b.memRuns = nil // the memory they held can go before the index is mapped

	for i := range b.lists {
		b.lists[i].Entries = enc.owned[i]
	}
	meta, err := json.Marshal(indexMeta{Lists: b.lists, Regexps: metaRegexps(b.regexps), TLDs: enc.tlds})
	if err != nil {
		return nil, fmt.Errorf("blocklist index meta: %w", err)
	}
	hdr, err := enc.finish(meta, hash)
	if err != nil {
		return nil, fmt.Errorf("write blocklist index: %w", err)
	}
	if enc.err != nil {
		return nil, enc.err
	}

	m := newOffHeap()
	var region []byte
	if out != nil {
		if _, err := out.WriteAt(hdr, 0); err != nil {
			return nil, fmt.Errorf("write blocklist index: %w", err)
		}
		if path != "" {
			if err := out.Sync(); err != nil {
				return nil, fmt.Errorf("write blocklist index: %w", err)
			}
		}
		if region, err = m.file(out, int(enc.total)); err != nil {
			return nil, fmt.Errorf("blocklist index: %w", err)
		}
		if path != "" {
			if err := os.Rename(out.Name(), path); err != nil {
				m.freeAll()
				return nil, fmt.Errorf("keep blocklist index: %w", err)
			}
		}
	} else {
		buf := mem.Bytes()
		copy(buf, hdr)
		region = m.bytes(len(buf))[:len(buf)]
		copy(region, buf)
	}
	// Not verified: the checksum was computed while writing it, and reading it all back would
	// bring the whole new index in while the old one still serves.
	ix, err := openIndex(region, m, nil)
	if err != nil {
		m.freeAll()
		return nil, err
	}
	ix.size = len(region)
	ix.setTLDs(enc.tlds)
	m.attach(ix)
	return newSet(ix, b.regexps, b.lists), nil
}

// newSet wraps an index with the lists' rules and infos.
func newSet(ix *index, regexps []regexRule, lists []ListInfo) *Set {
	s := &Set{ix: ix, attrs: ix.attrs, regexps: regexps, lists: lists}
	for _, a := range s.attrs {
		s.hasAllow = s.hasAllow || a.allow|a.allowBelow != 0
	}
	// Block expressions first so Match stops early; allow ones are only tried after a block hit.
	sort.SliceStable(s.regexps, func(i, j int) bool { return s.regexps[i].kind < s.regexps[j].kind })
	return s
}

// indexMeta is what a persisted index needs besides the names to make the same Set again.
type indexMeta struct {
	Lists   []ListInfo
	Regexps []metaRegexp
	TLDs    []tldInfo
}

type metaRegexp struct {
	List int
	Kind Kind
	Expr string
}

func metaRegexps(rs []regexRule) []metaRegexp {
	out := make([]metaRegexp, len(rs))
	for i, r := range rs {
		out[i] = metaRegexp{List: r.list, Kind: r.kind, Expr: r.expr}
	}
	return out
}

// setFromIndex makes the Set a persisted index describes.
func setFromIndex(ix *index) (*Set, error) {
	var meta indexMeta
	if err := json.Unmarshal(ix.meta, &meta); err != nil {
		return nil, fmt.Errorf("%w: meta: %w", errForeignIndex, err)
	}
	var regexps []regexRule
	for _, r := range meta.Regexps {
		re, err := compileRule(r.Expr)
		if err != nil || r.List < 0 || r.List >= len(meta.Lists) {
			return nil, fmt.Errorf("%w: expression %q", errForeignIndex, r.Expr)
		}
		regexps = append(regexps, regexRule{list: r.List, kind: r.Kind, re: re, expr: r.Expr, rule: formatRule(r.Kind, r.Expr)})
	}
	for i := range ix.attrs {
		if ix.attrs[i].any()>>len(meta.Lists) != 0 && len(meta.Lists) < 64 {
			return nil, fmt.Errorf("%w: list mask beyond %d lists", errForeignIndex, len(meta.Lists))
		}
	}
	for _, t := range meta.TLDs {
		if t.Block < 0 || t.Block >= max(1, len(ix.offs)) || int(t.Attr) >= len(ix.attrs) {
			return nil, fmt.Errorf("%w: TLD %q", errForeignIndex, t.Name)
		}
	}
	ix.setTLDs(meta.TLDs)
	return newSet(ix, regexps, meta.Lists), nil
}

// encoder writes the index: front-coded blocks as names come (in key order), then the tables.
type encoder struct {
	w       *bufio.Writer
	crc     uint32
	total   int64
	n       int
	prefix  []uint64
	offs    []uint32
	attrs   []attr
	attrIdx map[attr]uint16
	owned   []int
	tlds    []tldInfo
	blk     []byte // keys of the block being filled
	ends    []int
	bAttrs  []uint16
	out     []byte
	err     error
}

// newEncoder sizes the block index for at most records names, so that it does not grow.
func newEncoder(nlists, records int) *encoder {
	nb := records/blockSize + 1
	return &encoder{
		attrs: []attr{{}}, attrIdx: map[attr]uint16{{}: 0}, owned: make([]int, nlists), total: headerSize,
		prefix: make([]uint64, 0, 2*nb), offs: make([]uint32, 0, nb),
	}
}

func (e *encoder) write(p []byte) {
	e.crc = crc32.Update(e.crc, castagnoli, p)
	e.total += int64(len(p))
	if _, err := e.w.Write(p); err != nil && e.err == nil {
		e.err = err
	}
}

func (e *encoder) add(key []byte, a attr, owner int) {
	ai, ok := e.attrIdx[a]
	if !ok {
		if len(e.attrs) > 1<<16-1 {
			if e.err == nil {
				e.err = errors.New("too many distinct combinations of lists and rule kinds")
			}
			return
		}
		ai = uint16(len(e.attrs))
		e.attrs = append(e.attrs, a)
		e.attrIdx[a] = ai
	}
	if owner < len(e.owned) {
		e.owned[owner]++
	}
	e.addTLD(key, ai) // before the block can be flushed: the key is in block len(e.offs)
	e.blk = append(e.blk, key...)
	e.ends = append(e.ends, len(e.blk))
	e.bAttrs = append(e.bAttrs, ai)
	e.n++
	if len(e.ends) == blockSize {
		e.flushBlock()
	}
}

// addTLD records the first label of key (its TLD) for the first step of a lookup.
func (e *encoder) addTLD(key []byte, ai uint16) {
	tld := key
	if i := bytes.IndexByte(key, sep); i >= 0 {
		tld = key[:i]
	}
	if n := len(e.tlds); n == 0 || e.tlds[n-1].Name != string(tld) {
		e.tlds = append(e.tlds, tldInfo{Name: string(tld), Block: len(e.offs)})
	}
	t := &e.tlds[len(e.tlds)-1]
	if len(tld) == len(key) {
		t.Found, t.Attr = true, ai
	} else {
		t.More = true
	}
}

// flushBlock writes a block: a uvarint mode (0: each entry has its attr; m>0: all have m-1), then
// per entry the length shared with the previous key, the length of the rest, the attr if any, and
// the rest.
func (e *encoder) flushBlock() {
	if len(e.ends) == 0 {
		return
	}
	p0, p1 := keyPrefix(e.blk[:e.ends[0]])
	e.prefix = append(e.prefix, p0, p1)
	e.offs = append(e.offs, uint32(e.total-headerSize))
	uniform := !slices.ContainsFunc(e.bAttrs, func(a uint16) bool { return a != e.bAttrs[0] })
	o := e.out[:0]
	if uniform {
		o = appendUvarint(o, uint64(e.bAttrs[0])+1)
	} else {
		o = append(o, 0)
	}
	var prev []byte
	start := 0
	for i, end := range e.ends {
		k := e.blk[start:end]
		start = end
		p := 0
		for p < len(prev) && p < len(k) && prev[p] == k[p] {
			p++
		}
		o = append(o, byte(p), byte(len(k)-p))
		if !uniform {
			o = appendUvarint(o, uint64(e.bAttrs[i]))
		}
		o = append(o, k[p:]...)
		prev = k
	}
	e.write(o)
	e.out = o
	e.blk, e.ends, e.bAttrs = e.blk[:0], e.ends[:0], e.bAttrs[:0]
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func (e *encoder) pad() {
	if r := e.total % 8; r != 0 {
		e.write(make([]byte, 8-r))
	}
}

func asBytes[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(z)))
}

// finish writes the tables and the meta, and returns the header to write at offset 0.
func (e *encoder) finish(meta []byte, hash [32]byte) ([]byte, error) {
	e.flushBlock()
	h := indexHeader{Order: byteOrderTag, Version: indexVersion, BlockSize: blockSize, N: uint64(e.n), Hash: hash}
	copy(h.Magic[:], indexMagic)
	h.DataOff, h.DataLen = headerSize, uint64(e.total-headerSize)
	e.pad()
	h.AttrsOff, h.Attrs = uint64(e.total), uint64(len(e.attrs))
	e.write(asBytes(e.attrs))
	h.PrefixOff, h.Blocks = uint64(e.total), uint64(len(e.offs))
	e.write(asBytes(e.prefix))
	h.OffsOff = uint64(e.total)
	e.write(asBytes(e.offs))
	e.pad()
	h.MetaOff, h.MetaLen = uint64(e.total), uint64(len(meta))
	e.write(meta)
	h.Total = uint64(e.total)
	if err := e.w.Flush(); err != nil {
		return nil, err
	}
	if e.err != nil {
		return nil, e.err
	}
	hb := unsafe.Slice((*byte)(unsafe.Pointer(&h)), headerSize)
	h.Checksum = uint64(crc32.Update(e.crc, castagnoli, hb))
	return slices.Clone(hb), nil
}
