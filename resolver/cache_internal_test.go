package resolver

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestSlab: records of every class and above get room of their own, a freed slot is reused by
// the next record of its class, a huge record's chunk is dropped when it is freed, and records
// never overlap whatever the order of allocations and frees.
func TestSlab(t *testing.T) {
	var s slab
	type rec struct {
		ref  slabRef
		fill byte
	}
	var live []rec
	check := func() {
		t.Helper()
		for _, r := range live {
			b := s.bytes(r.ref)
			if len(b) != int(r.ref.n) || cap(b) != len(b) {
				t.Fatalf("record of %d bytes has len %d cap %d", r.ref.n, len(b), cap(b))
			}
			if i := bytes.IndexFunc(b, func(c rune) bool { return byte(c) != r.fill }); i >= 0 {
				t.Fatalf("record filled with %d has %d at %d: another record overlaps it", r.fill, b[i], i)
			}
		}
	}
	sizes := []int{1, 64, 65, 100, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 4096, 4097, 20000, 65535}
	for round := range 6 {
		for i, n := range sizes {
			r := rec{ref: s.alloc(n), fill: byte(len(live)%250 + 1)}
			if r.ref.class < hugeClass && (slabClasses[r.ref.class] < uint32(n) || r.ref.class > 0 && slabClasses[r.ref.class-1] >= uint32(n)) {
				t.Fatalf("%d bytes in class %d", n, r.ref.class)
			}
			if (n > 4096) != (r.ref.class == hugeClass) {
				t.Fatalf("%d bytes: class %d", n, r.ref.class)
			}
			b := s.bytes(r.ref)
			for j := range b {
				b[j] = r.fill
			}
			live = append(live, r)
			if (i+round)%3 == 0 { // free an older record now and then
				k := (i * 7) % len(live)
				s.release(live[k].ref)
				live = append(live[:k], live[k+1:]...)
			}
		}
		check()
	}

	// A freed slot is the next one of its class.
	a := s.alloc(100)
	s.release(a)
	if b := s.alloc(120); b.slabSlot != a.slabSlot {
		t.Errorf("freed slot %+v not reused: got %+v", a.slabSlot, b.slabSlot)
	}
	// A huge record's chunk goes when the record does.
	before := s.size
	h := s.alloc(50000)
	if s.size != before+50000 {
		t.Errorf("size %d after a 50000-byte record, want %d", s.size, before+50000)
	}
	s.release(h)
	if s.size != before || s.chunks[h.chunk] != nil {
		t.Errorf("huge chunk kept: size %d, want %d", s.size, before)
	}
	check()
	s.reset()
	if s.size != 0 || len(s.chunks) != 0 {
		t.Errorf("reset kept %d bytes in %d chunks", s.size, len(s.chunks))
	}
}

// TestCacheHashCollision: two questions whose keys hash alike never get each other's answer;
// the later one replaces the earlier.
func TestCacheHashCollision(t *testing.T) {
	c := NewCache(CacheOptions{MaxEntries: 10, Shards: 1}, CacheObserver{})
	defer c.Close()
	now := time.Now()
	put := func(name string, wire []byte) {
		e := cacheEntry{hash: 42, qtype: 1, qclass: 1, stored: now.UnixNano(), expires: now.Add(time.Minute).UnixNano(), until: now.Add(time.Minute).UnixNano()}
		c.insert(&e, name, wire, now)
	}
	get := func(name string) ([]byte, entryState) {
		var buf []byte
		_, st, _ := c.lookup(&qkey{hash: 42, name: name, qtype: 1, qclass: 1}, now, &buf)
		return buf, st
	}
	put("a.example.", []byte("answer-a"))
	if b, st := get("A.EXAMPLE."); st != entryFresh || string(b) != "answer-a" {
		t.Fatalf("a: %q %v", b, st)
	}
	if _, st := get("b.example."); st != entryMissing {
		t.Fatalf("b found before it was stored: %v", st)
	}
	put("b.example.", []byte("answer-b, longer than a's"))
	if b, st := get("b.example."); st != entryFresh || string(b) != "answer-b, longer than a's" {
		t.Fatalf("b: %q %v", b, st)
	}
	if b, st := get("a.example."); st != entryMissing {
		t.Fatalf("a still answered after b replaced it: %q %v", b, st)
	}
	if n := c.Len(); n != 1 {
		t.Errorf("Len %d, want 1", n)
	}
}

// TestCacheShardRecordsStayWhole: in a small shard under churn (replacements with answers of
// another size, evictions, expiry), every entry's record still holds its own name and answer.
func TestCacheShardRecordsStayWhole(t *testing.T) {
	c := NewCache(CacheOptions{MaxEntries: 50, Shards: 1}, CacheObserver{})
	defer c.Close()
	now := time.Now()
	sh := &c.shards[0]
	want := map[string]string{}
	for i := range 5000 {
		name := fmt.Sprintf("n%d.example.", (i*37)%120)
		answer := bytes.Repeat([]byte{byte('a' + i%26)}, 1+(i*131)%5000)
		life := time.Duration(1+i%7) * time.Second
		e := cacheEntry{hash: uint64((i * 37) % 120), qtype: 1, qclass: 1, stored: now.UnixNano(),
			expires: now.Add(life).UnixNano(), until: now.Add(life).UnixNano()}
		c.insert(&e, name, answer, now)
		want[name] = string(answer)
		now = now.Add(300 * time.Millisecond)
		if i%50 != 0 {
			continue
		}
		sh.mu.Lock()
		if len(sh.m) != len(sh.ring)+sh.slive || len(sh.m) > 50 {
			t.Fatalf("map %d entries, queues %d+%d", len(sh.m), len(sh.ring), sh.slive)
		}
		for h, idx := range sh.m {
			e := &sh.ents[idx]
			rec := sh.mem.bytes(e.rec)
			name := string(rec[:e.nameLen])
			if e.hash != h || want[name] != string(rec[e.nameLen:]) {
				t.Fatalf("entry %d (hash %d) holds %q with a %d-byte answer, not its own", idx, h, name, len(rec)-int(e.nameLen))
			}
		}
		sh.mu.Unlock()
	}
}

// TestPackStoredCompressesOnlyLargeAnswers: a small answer is stored uncompressed (no compression
// map per miss), a large one compressed (memory); both come back as they went in.
func TestPackStoredCompressesOnlyLargeAnswers(t *testing.T) {
	for _, n := range []int{2, 40} {
		m := new(dns.Msg)
		m.SetQuestion("host.example.", dns.TypeA)
		m.Response = true
		for i := range n {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "host.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A: net.IPv4(192, 0, 2, byte(i)).To4()})
		}
		wire := packStored(m, false, 0, 3600, nil)
		plain := dns.Msg{MsgHdr: m.MsgHdr, Answer: m.Answer}
		plain.Id = 0
		full := plain.Len()
		if compressed := full > storeCompressAbove; compressed != (len(wire) < full) {
			t.Errorf("%d records: stored %d bytes, %d uncompressed", n, len(wire), full)
		}
		var got dns.Msg
		if err := got.Unpack(wire); err != nil {
			t.Fatalf("%d records: %v", n, err)
		}
		if len(got.Answer) != n || got.Answer[n-1].String() != m.Answer[n-1].String() {
			t.Errorf("%d records: got back %v", n, got.Answer)
		}
	}
}

// TestCacheLookupDoesNotAllocate: finding an entry compares its stored name in place, whatever
// the name's length (converting it to a string would allocate past 32 bytes).
func TestCacheLookupDoesNotAllocate(t *testing.T) {
	c := NewCache(CacheOptions{}, CacheObserver{})
	defer c.Close()
	now := time.Now()
	for _, name := range []string{"short.example.", "a-name-longer-than-thirty-two-bytes.cdn.example."} {
		q := new(dns.Msg).SetQuestion(name, dns.TypeA)
		k, ok := makeKey(c.seed, q)
		if !ok {
			t.Fatal("no key")
		}
		e := cacheEntry{hash: k.hash, qtype: k.qtype, qclass: k.qclass, flags: k.flags,
			stored: now.UnixNano(), expires: now.Add(time.Hour).UnixNano(), until: now.Add(time.Hour).UnixNano()}
		c.insert(&e, name, []byte("stored answer"), now)
		buf := make([]byte, 0, 64)
		var st entryState
		if n := testing.AllocsPerRun(100, func() { _, st, _ = c.lookup(&k, now, &buf) }); n != 0 {
			t.Errorf("%s: lookup allocates %v times", name, n)
		}
		if st != entryFresh || string(buf) != "stored answer" {
			t.Errorf("%s: lookup found state %d, %q", name, st, buf)
		}
	}
}
