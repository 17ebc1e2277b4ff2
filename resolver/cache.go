package resolver

import (
	"context"
	"errors"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// CacheOptions configure a Cache. Zero values mean the defaults, except where said otherwise.
type CacheOptions struct {
	// MaxEntries bounds the entries held; default 10000.
	MaxEntries int
	// MinTTL and MaxTTL clamp the TTLs of positive answers; defaults 0 and 24h. MaxTTL wins
	// over a larger MinTTL.
	MinTTL, MaxTTL time.Duration
	// NegativeMaxTTL caps how long NXDOMAIN and NODATA answers are kept (their TTL is the SOA's
	// min(TTL, MINIMUM), RFC 2308); default 1h.
	NegativeMaxTTL time.Duration
	// ServFailTTL is how long an upstream's SERVFAIL is kept (RFC 2308 §7.1, RFC 9520), so that
	// clients retrying a broken name do not each reach the upstreams; 5s is a good value.
	// Zero disables it. Timeouts are never cached: they may be ours, not the upstream's.
	ServFailTTL time.Duration
	// ServeStale answers from an expired entry when the upstreams fail (RFC 8767).
	ServeStale bool
	// StaleMaxAge is how long past expiry an entry may be served stale; default 24h.
	StaleMaxAge time.Duration
	// StaleAnswerTTL is the TTL of stale answers, and how long after a failed refresh stale
	// answers are given without asking the upstreams again (RFC 8767's failure recheck); default 30s.
	StaleAnswerTTL time.Duration
	// PrefetchHits enables prefetch: an entry hit at least this many times since it was stored
	// is refreshed in the background, once, by the first hit in the last PrefetchWindow (a
	// fraction, default 0.1) of its TTL. Zero disables.
	PrefetchHits   int
	PrefetchWindow float64
	// FetchTimeout bounds an upstream fetch that runs detached from any one client (a coalesced
	// miss, a prefetch); default 5s, the Handler's default query timeout.
	FetchTimeout time.Duration
	// Shards is the number of independently locked parts (rounded up to a power of two,
	// at most MaxEntries); default 64.
	Shards int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// CacheObserver receives cache events, e.g. for Prometheus counters. Nil fields are fine.
// Hit counts fresh answers (including cached SERVFAILs), Miss queries passed on, Stale stale
// answers, Prefetch background refreshes started, Evict live entries removed to stay in bounds.
type CacheObserver struct {
	Hit, Miss, Stale, Prefetch, Evict func()
}

// Cache is the response cache stage. Only forwarded answers are stored (Outcome ==
// OutcomeForwarded); hits are answered with OutcomeCached and the Upstream that gave the answer.
// Concurrent misses for one question share one call to the next stage (see Coalesce).
type Cache struct {
	opts   CacheOptions
	obs    CacheObserver
	seed   maphash.Seed
	shards []cacheShard
	mask   uint64
	bg     *background
	co     *coalescer
	// In seconds, as RR TTLs are.
	minTTL, maxTTL, negMaxTTL, staleTTL uint32

	// The upstreams that gave answers, so that an entry names its upstream by index: copied on
	// write under upMu, read without a lock.
	ups  atomic.Pointer[[]string]
	upMu sync.Mutex
	// Buffers for packing an answer before it is stored and for copying one out of a shard.
	bufs sync.Pool
}

// cacheShard holds part of the entries, in two queues as S3-FIFO does (Yang et al., "FIFO queues
// are all you need for cache eviction", SOSP 2023). A new entry waits in the small FIFO queue;
// when it reaches the end, it moves to the main queue if it was hit meanwhile and is dropped if
// not. So names asked once, most of DNS traffic (and all of a scan of unique names), pass
// through the small queue without pushing the names clients keep asking for out of the main one.
// The main queue is a CLOCK (second chance): a hit only sets a flag under the lock the lookup
// holds anyway, and finding a victim is a short sweep of the ring; LRU would move list nodes on
// every hit. The small queue gives up its oldest entries while it holds more than a tenth of
// the shard; otherwise the main queue gives up one.
//
// Nothing in a shard holds a pointer per entry: entries are indexes into ents, and the packed
// answers are in mem (see slab). The collector has nothing to mark per entry, and an entry costs
// no allocation once the shard has grown.
type cacheShard struct {
	mu    sync.Mutex
	m     map[uint64]int32 // by key hash: index in ents
	ents  []cacheEntry
	spare []int32 // indexes in ents not in use
	ring  []int32 // the main queue in CLOCK order
	hand  int
	// The small queue: a circular buffer of limit slots from shead, sused of them taken, of
	// which slive hold entries (the others, -1, were removed in place).
	small               []int32
	shead, sused, slive int
	limit               int
	mem                 slab
	_                   [64]byte // keeps neighbouring shards' locks off one cache line
}

// cacheEntry is one stored answer, guarded by its shard's lock. Its record in the shard's slab
// is the question's name as first asked, then the answer packed with compression, ID 0 and no
// question, as dnsdist's packet cache keeps it: a *dns.Msg is about ten objects with pointers,
// which the collector would mark on every cycle. A hit copies the packed answer out under the
// lock and unpacks it after. Times are Unix nanoseconds of the cache's clock.
type cacheEntry struct {
	hash     uint64
	stored   int64
	expires  int64
	until    int64 // after this the entry is of no use (expires, or the end of the stale window)
	prefetch int64 // hits from this time on may start a prefetch
	recheck  int64 // until then stale answers are given without asking next
	rec      slabRef
	nameLen  uint16
	qtype    uint16
	qclass   uint16
	upstream uint16 // index in Cache.ups
	slot     int32  // in the small queue or the ring
	hits     int32
	flags    uint8 // the key's
	compress bool  // the upstream's answer was compressed (the reply is packed alike)
	servfail bool
	ref      bool // hit since stored, or since the CLOCK hand last passed
	inSmall  bool // in the small queue, at slot; else in the main one
	// A prefetch was started for this answer.
	prefetching bool
}

// cacheHit is what an answer needs of its entry, copied out under the shard's lock.
type cacheHit struct {
	stored   int64
	upstream uint16
	compress bool
	servfail bool
}

// NewCache returns an empty cache. Call Close when it is no longer used, to stop and wait for
// its background fetches.
func NewCache(o CacheOptions, obs CacheObserver) *Cache {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
	o.MinTTL = max(o.MinTTL, 0)
	def(&o.MaxTTL, 24*time.Hour)
	def(&o.NegativeMaxTTL, time.Hour)
	def(&o.StaleMaxAge, 24*time.Hour)
	def(&o.StaleAnswerTTL, 30*time.Second)
	if o.PrefetchWindow <= 0 || o.PrefetchWindow > 1 {
		o.PrefetchWindow = 0.1
	}
	def(&o.FetchTimeout, defaultFetchTimeout)
	if o.Shards <= 0 {
		o.Shards = 64
	}
	n := 1 << bits.Len(uint(o.Shards-1)) // the next power of two
	for n > o.MaxEntries {
		n /= 2
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	nop := func() {}
	for _, f := range []*func(){&obs.Hit, &obs.Miss, &obs.Stale, &obs.Prefetch, &obs.Evict} {
		if *f == nil {
			*f = nop
		}
	}
	c := &Cache{
		opts: o, obs: obs, seed: maphash.MakeSeed(),
		shards:    make([]cacheShard, n),
		mask:      uint64(n - 1),
		bg:        newBackground(),
		minTTL:    seconds(o.MinTTL),
		maxTTL:    seconds(o.MaxTTL),
		negMaxTTL: seconds(o.NegativeMaxTTL),
		staleTTL:  seconds(o.StaleAnswerTTL),
	}
	c.co = newCoalescer(o.FetchTimeout, c.bg)
	for i := range c.shards {
		// Spread MaxEntries exactly: the shards' limits add up to it.
		c.shards[i].limit = o.MaxEntries / n
		if i < o.MaxEntries%n {
			c.shards[i].limit++
		}
		c.shards[i].m = make(map[uint64]int32)
		c.shards[i].small = make([]int32, c.shards[i].limit)
	}
	c.ups.Store(&[]string{""})
	c.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	return c
}

func seconds(d time.Duration) uint32 {
	return uint32(min(d/time.Second, math.MaxUint32))
}

// Middleware returns the cache stage. It belongs below the stages that decide per client
// (access, policy, block), since a cached answer is given to every client, and above the terminal
// stage. A nil *Cache (no cache configured) has no stage: nil, which Chain skips.
func (c *Cache) Middleware() Middleware {
	if c == nil {
		return nil
	}
	return func(next Resolver) Resolver {
		fetch := func(ctx context.Context, k *qkey, req *Request) (*Response, error) {
			resp, err := next.Resolve(ctx, req)
			c.store(k, req, resp, err)
			return resp, err
		}
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			return c.resolve(ctx, next, fetch, req)
		})
	}
}

// Close cancels background refreshes and shared fetches and waits for them. The cache still
// answers afterwards (an old chain may finish its queries after a reload), without prefetch.
func (c *Cache) Close() { c.bg.Close() }

// Len returns the number of entries, expired ones not yet removed included.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.ring) + sh.slive
		sh.mu.Unlock()
	}
	return n
}

// Flush removes every entry (evictions are not counted).
func (c *Cache) Flush() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.ents, sh.spare, sh.ring, sh.hand = nil, nil, sh.ring[:0], 0
		sh.shead, sh.sused, sh.slive = 0, 0, 0
		sh.mem.reset()
		sh.mu.Unlock()
	}
}

type entryState uint8

const (
	entryMissing entryState = iota
	entryFresh
	entryStale     // expired but may be served stale if next fails
	entryStaleHeld // a refresh failed recently: serve stale without asking next
)

func (c *Cache) resolve(ctx context.Context, next Resolver, fetch fetchFunc, req *Request) (*Response, error) {
	k, ok := makeKey(c.seed, req.Msg)
	if !ok {
		return next.Resolve(ctx, req)
	}
	buf := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(buf)
	now := c.opts.Now()
	h, st, prefetch := c.lookup(&k, now, buf)
	switch st {
	case entryFresh:
		if resp := c.answer(h, *buf, req, &k, now, false); resp != nil {
			c.obs.Hit()
			if prefetch && c.co.detached(k, req, fetch) {
				c.obs.Prefetch()
			}
			return resp, nil
		}
	case entryStaleHeld:
		if resp := c.answer(h, *buf, req, &k, now, true); resp != nil {
			c.obs.Stale()
			return resp, nil
		}
	}
	c.obs.Miss()
	WillWait(ctx)
	resp, err := c.co.do(ctx, k, req, fetch)
	if st == entryStale && failed(resp, err) {
		now = c.opts.Now()
		if h, ok := c.staleEntry(&k, now, buf); ok {
			if resp := c.answer(h, *buf, req, &k, now, true); resp != nil {
				c.obs.Stale()
				return resp, nil
			}
		}
	}
	return resp, err
}

func failed(resp *Response, err error) bool {
	return err != nil || resp == nil || resp.Msg == nil ||
		resp.Outcome == OutcomeForwarded && resp.Msg.Rcode == dns.RcodeServerFailure
}

func (c *Cache) shard(h uint64) *cacheShard { return &c.shards[h&c.mask] }

// lookup finds k's entry and says what it is good for; prefetch says this hit is the one to
// start the entry's refresh. An entry that can be answered from is copied to buf.
func (c *Cache) lookup(k *qkey, now time.Time, buf *[]byte) (h cacheHit, st entryState, prefetch bool) {
	sh := c.shard(k.hash)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, e := sh.find(k)
	if e == nil {
		return h, entryMissing, false
	}
	ns := now.UnixNano()
	switch {
	case ns < e.expires:
		e.ref = true
		e.hits++
		if c.opts.PrefetchHits > 0 && !e.prefetching && !e.servfail && int(e.hits) >= c.opts.PrefetchHits && ns >= e.prefetch {
			e.prefetching = true
			prefetch = true
		}
		return sh.copyOut(e, buf), entryFresh, prefetch
	case ns < e.until:
		if ns < e.recheck {
			e.ref = true
			return sh.copyOut(e, buf), entryStaleHeld, false
		}
		return h, entryStale, false
	}
	sh.remove(i)
	return h, entryMissing, false
}

// find returns k's entry and its index, or nil.
func (sh *cacheShard) find(k *qkey) (int32, *cacheEntry) {
	i, ok := sh.m[k.hash]
	if !ok {
		return -1, nil
	}
	e := &sh.ents[i]
	if e.qtype != k.qtype || e.qclass != k.qclass || e.flags != k.flags ||
		!equalFoldASCII(sh.mem.bytes(e.rec)[:e.nameLen], k.name) {
		return -1, nil
	}
	return i, e
}

// copyOut copies e's packed answer to buf and returns the rest an answer needs.
func (sh *cacheShard) copyOut(e *cacheEntry, buf *[]byte) cacheHit {
	*buf = append((*buf)[:0], sh.mem.bytes(e.rec)[e.nameLen:]...)
	return cacheHit{stored: e.stored, upstream: e.upstream, compress: e.compress, servfail: e.servfail}
}

// staleEntry copies k's entry to buf if it may be served after a failed refresh, and holds off
// further refreshes for StaleAnswerTTL.
func (c *Cache) staleEntry(k *qkey, now time.Time, buf *[]byte) (cacheHit, bool) {
	sh := c.shard(k.hash)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, e := sh.find(k)
	if e == nil || e.servfail || now.UnixNano() >= e.until {
		return cacheHit{}, false
	}
	e.recheck = now.Add(c.opts.StaleAnswerTTL).UnixNano()
	return sh.copyOut(e, buf), true
}

// answer is the reply to req from e: the stored answer unpacked with the TTLs aged (or set to
// the stale TTL), or nil if it does not unpack (it was packed here, so that would be a bug; the
// query is then passed on rather than failed). The Handler sets ID, question spelling and EDNS;
// what depends on the entry's age is done here.
func (c *Cache) answer(e cacheHit, wire []byte, req *Request, k *qkey, now time.Time, stale bool) *Response {
	h := new(hitReply)
	m := &h.msg
	if err := m.Unpack(wire); err != nil { // copies what it keeps: wire is the caller's buffer
		return nil
	}
	// Like the Handler, the reply carries the request's own question.
	q := req.Msg.Question
	m.Question, m.Compress = q[:len(q):len(q)], e.compress
	switch {
	case stale:
		setTTLs(m, c.staleTTL, 0)
		if k.edns {
			code := dns.ExtendedErrorCodeStaleAnswer
			if m.Rcode == dns.RcodeNameError {
				code = dns.ExtendedErrorCodeStaleNXDOMAINAnswer
			}
			addEDE(m, code)
		}
	case e.servfail:
		if k.edns {
			addEDE(m, dns.ExtendedErrorCodeCachedError)
		}
	default:
		if age := time.Duration(now.UnixNano() - e.stored); age >= time.Second {
			setTTLs(m, 0, seconds(age))
		}
	}
	// RFC 6840 §5.8: AD only for clients that asked with DO or AD; the entry may be another's.
	if m.AuthenticatedData && k.flags&keyDO == 0 && !req.Msg.AuthenticatedData {
		m.AuthenticatedData = false
	}
	h.resp = Response{Msg: m, Outcome: OutcomeCached, Upstream: (*c.ups.Load())[e.upstream]}
	return &h.resp
}

// hitReply is the Response and Msg of a hit in one allocation.
type hitReply struct {
	resp Response
	msg  dns.Msg
}

// setTTLs sets every record's TTL to ttl, or when ttl is 0 lowers it by age (not below 0).
func setTTLs(m *dns.Msg, ttl, age uint32) {
	for _, sec := range [3][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			switch {
			case h.Rrtype == dns.TypeOPT:
			case ttl > 0:
				h.Ttl = ttl
			case h.Ttl > age:
				h.Ttl -= age
			default:
				h.Ttl = 0
			}
		}
	}
}

// addEDE adds an Extended DNS Error (RFC 8914) to m, which must be a copy; the Handler sets the
// rest of the OPT record.
func addEDE(m *dns.Msg, code uint16) {
	opt := m.IsEdns0()
	if opt == nil {
		opt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		m.Extra = append(m.Extra, opt)
	}
	opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: code})
}

// store keeps next's answer to req if it is cacheable.
func (c *Cache) store(k *qkey, req *Request, resp *Response, err error) {
	var (
		wire     []byte
		life     time.Duration
		upstream string
		servfail bool
	)
	buf := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(buf)
	e := cacheEntry{hash: k.hash, qtype: k.qtype, qclass: k.qclass, flags: k.flags}
	switch {
	case err != nil || resp == nil || resp.Msg == nil:
		if servfail = upstreamServFail(err); !servfail {
			return
		}
	case resp.Outcome != OutcomeForwarded:
		return
	case resp.Msg.Rcode == dns.RcodeServerFailure:
		servfail, upstream = true, resp.Upstream
	default:
		var ttl uint32
		if wire, ttl = c.prepare(resp.Msg, *buf); wire == nil {
			return
		}
		life, upstream, e.compress = time.Duration(ttl)*time.Second, resp.Upstream, resp.Msg.Compress
	}
	if servfail {
		if c.opts.ServFailTTL <= 0 {
			return
		}
		m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Rcode: dns.RcodeServerFailure}}
		var perr error
		if wire, perr = m.PackBuffer((*buf)[:cap(*buf)]); perr != nil {
			return
		}
		life, e.servfail = c.opts.ServFailTTL, true
	}
	*buf = wire[:0] // keep the larger buffer if packing grew it
	now := c.opts.Now()
	e.upstream = c.upstreamIndex(upstream)
	e.stored, e.expires = now.UnixNano(), now.Add(life).UnixNano()
	e.until = e.expires
	if c.opts.ServeStale && !servfail {
		e.until = now.Add(life + c.opts.StaleMaxAge).UnixNano()
	}
	e.prefetch = now.Add(life - time.Duration(float64(life)*c.opts.PrefetchWindow)).UnixNano()
	if c.insert(&e, k.name, wire, now) {
		c.obs.Evict()
	}
}

// upstreamIndex returns up's index in c.ups, adding it if new. Upstreams are few (the
// configured ones), so a scan is enough; past 65,535 of them an entry names none.
func (c *Cache) upstreamIndex(up string) uint16 {
	if i := slices.Index(*c.ups.Load(), up); i >= 0 {
		return uint16(i)
	}
	c.upMu.Lock()
	defer c.upMu.Unlock()
	ups := *c.ups.Load()
	if i := slices.Index(ups, up); i >= 0 {
		return uint16(i)
	}
	if len(ups) > math.MaxUint16 {
		return 0
	}
	ups = append(slices.Clip(ups), strings.Clone(up))
	c.ups.Store(&ups)
	return uint16(len(ups) - 1)
}

// upstreamServFail says whether err reports an upstream that answered SERVFAIL (rather than,
// say, a timeout, which may be ours).
func upstreamServFail(err error) bool {
	var rerr *RcodeError
	return errors.As(err, &rerr) && rerr.Rcode == dns.RcodeServerFailure
}

// prepare returns src packed into buf as the cache stores it (see packStored) and its TTL in seconds, or
// nil if src is not to be cached: truncated, an rcode other than NOERROR and NXDOMAIN, a negative answer without a SOA
// (RFC 2308 §5), an answer tailored to a client subnet, or a TTL of 0.
func (c *Cache) prepare(src *dns.Msg, buf []byte) ([]byte, uint32) {
	if src.Truncated || src.Rcode != dns.RcodeSuccess && src.Rcode != dns.RcodeNameError {
		return nil, 0
	}
	if opt := src.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if o.Option() == dns.EDNS0SUBNET {
				return nil, 0
			}
		}
	}
	negative := src.Rcode == dns.RcodeNameError || len(src.Answer) == 0
	ttl, soa := uint32(math.MaxUint32), false
	for _, sec := range [2][]dns.RR{src.Answer, src.Ns} {
		for _, rr := range sec {
			t := rr.Header().Ttl
			if s, ok := rr.(*dns.SOA); ok {
				soa, t = true, min(t, s.Minttl)
			}
			if rr.Header().Rrtype != dns.TypeOPT {
				ttl = min(ttl, t)
			}
		}
	}
	if negative && !soa {
		return nil, 0
	}
	lo, hi := c.minTTL, c.maxTTL
	if negative {
		lo, hi = 0, c.negMaxTTL
	}
	if ttl = min(max(ttl, lo), hi); ttl == 0 {
		return nil, 0
	}

	return packStored(src, negative, lo, hi, buf), ttl
}

// storeCompressAbove is the size above which a stored answer is compressed (see packStored).
const storeCompressAbove = 512

// packStored packs src into buf (or a larger buffer if it does not fit) as the cache stores it: ID
// 0, no question, only Extended DNS Errors in the OPT record, every TTL clamped to [lo, hi] (and,
// in a negative answer, a SOA's to its minimum, what clients take as the negative TTL). It returns
// nil if src does not pack.
//
// Only answers of more than storeCompressAbove bytes are compressed. miekg/dns compresses
// through a map it allocates per message; for the usual small answer that map cost two of the
// miss path's allocations and a quarter of its bytes, against about 75 bytes more per entry.
//
// src is not copied: the TTLs are set in its records for the pack and put back after, which is
// safe because the cache stores from inside the fetch, before anyone else sees the reply. A deep
// copy cost about a third of the store.
func packStored(src *dns.Msg, negative bool, lo, hi uint32, buf []byte) []byte {
	m := dns.Msg{MsgHdr: src.MsgHdr, Answer: src.Answer, Ns: src.Ns, Extra: storedExtra(src.Extra)}
	m.Id = 0
	m.Compress = m.Len() > storeCompressAbove
	var small [16]uint32
	saved := small[:0]
	for _, sec := range [3][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			saved = append(saved, h.Ttl)
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			if s, ok := rr.(*dns.SOA); ok && negative {
				h.Ttl = min(h.Ttl, s.Minttl)
			}
			h.Ttl = min(max(h.Ttl, lo), hi)
		}
	}
	wire, err := m.PackBuffer(buf[:cap(buf)])
	i := 0
	for _, sec := range [3][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			rr.Header().Ttl = saved[i]
			i++
		}
	}
	if err != nil {
		return nil
	}
	return wire
}

// storedExtra is extra without its OPT record, or with a new one that carries only the Extended
// DNS Errors of the old: the other options concern the hop to the upstream, and the Handler makes
// the client's OPT. extra itself is not modified.
func storedExtra(extra []dns.RR) []dns.RR {
	i := slices.IndexFunc(extra, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
	if i < 0 {
		return extra
	}
	if len(extra) == 1 && !slices.ContainsFunc(extra[0].(*dns.OPT).Option, isEDE) {
		return nil // the usual case: an OPT record and nothing else
	}
	out := make([]dns.RR, 0, len(extra))
	for _, rr := range extra {
		opt, ok := rr.(*dns.OPT)
		if !ok {
			out = append(out, rr)
			continue
		}
		var ede []dns.EDNS0
		for _, o := range opt.Option {
			if isEDE(o) {
				ede = append(ede, o)
			}
		}
		if len(ede) > 0 {
			out = append(out, &dns.OPT{Hdr: opt.Hdr, Option: ede})
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func isEDE(o dns.EDNS0) bool { return o.Option() == dns.EDNS0EDE }

// insert adds or replaces e's key, whose name is name and answer wire, making room if the shard
// is full; it reports whether a live entry was evicted. A SERVFAIL never replaces an entry that
// can still be served.
func (c *Cache) insert(e *cacheEntry, name string, wire []byte, now time.Time) (evicted bool) {
	sh := c.shard(e.hash)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ns := now.UnixNano()
	k := qkey{hash: e.hash, name: name, qtype: e.qtype, qclass: e.qclass, flags: e.flags}
	i, old := sh.find(&k)
	if old == nil {
		if j, ok := sh.m[e.hash]; ok {
			sh.remove(j) // another question with the same hash: the newer answer wins
		}
		for len(sh.ring)+sh.slive >= sh.limit {
			if sh.evict(ns) {
				evicted = true
			}
		}
		i = sh.newEntry()
		old = &sh.ents[i]
		sh.pushSmall(i)
		e.inSmall, e.slot = old.inSmall, old.slot
	} else {
		if e.servfail && !old.servfail && ns < old.until {
			return false
		}
		// The new answer takes the old one's place in its queue.
		e.inSmall, e.slot, e.ref = old.inSmall, old.slot, old.ref
		sh.mem.release(old.rec)
	}
	e.nameLen = uint16(len(name))
	e.rec = sh.mem.alloc(len(name) + len(wire))
	rec := sh.mem.bytes(e.rec)
	copy(rec[copy(rec, name):], wire)
	*old = *e
	sh.m[e.hash] = i
	return evicted
}

// newEntry returns the index of an unused entry.
func (sh *cacheShard) newEntry() int32 {
	if last := len(sh.spare) - 1; last >= 0 {
		i := sh.spare[last]
		sh.spare = sh.spare[:last]
		return i
	}
	sh.ents = append(sh.ents, cacheEntry{})
	return int32(len(sh.ents) - 1)
}

// evict makes progress towards room for one entry: it moves the small queue's oldest entry to
// the main queue if it was hit, or removes an entry. It reports whether a live entry was removed.
func (sh *cacheShard) evict(ns int64) (live bool) {
	if sh.slive > sh.limit/10 || len(sh.ring) == 0 {
		i := sh.popSmall()
		e := &sh.ents[i]
		if e.ref && ns < e.until {
			e.ref, e.inSmall, e.slot = false, false, int32(len(sh.ring))
			sh.ring = append(sh.ring, i)
			return false
		}
		live = ns < e.until
		sh.free(i)
		return live
	}
	i := sh.victim(ns)
	live = ns < sh.ents[i].until
	sh.remove(i)
	return live
}

// victim advances the CLOCK hand over the main queue to the first entry that is dead or not
// referenced since the hand last passed, clearing reference bits on the way. It ends within two
// turns of the ring.
func (sh *cacheShard) victim(ns int64) int32 {
	for {
		i := sh.ring[sh.hand]
		if sh.hand++; sh.hand == len(sh.ring) {
			sh.hand = 0
		}
		e := &sh.ents[i]
		if !e.ref || ns >= e.until {
			return i
		}
		e.ref = false
	}
}

// remove takes entry i out of the shard: from the main queue, where the ring's last entry moves
// into its slot, or from the small one, where its slot is left empty.
func (sh *cacheShard) remove(i int32) {
	e := &sh.ents[i]
	if e.inSmall {
		sh.small[e.slot] = -1
		sh.slive--
	} else {
		last := len(sh.ring) - 1
		moved := sh.ring[last]
		sh.ring[e.slot], sh.ents[moved].slot = moved, e.slot
		sh.ring = sh.ring[:last]
		if sh.hand >= len(sh.ring) {
			sh.hand = 0
		}
	}
	sh.free(i)
}

// free gives up entry i, which is in no queue: its key, its record and its index.
func (sh *cacheShard) free(i int32) {
	e := &sh.ents[i]
	delete(sh.m, e.hash)
	sh.mem.release(e.rec)
	*e = cacheEntry{}
	sh.spare = append(sh.spare, i)
}

// pushSmall appends entry i to the small queue. The caller has made room: the shard holds fewer
// than limit entries, so if every slot is taken some are empty, and compacting frees them.
func (sh *cacheShard) pushSmall(i int32) {
	if sh.sused == len(sh.small) {
		sh.compactSmall()
	}
	s := (sh.shead + sh.sused) % len(sh.small)
	sh.small[s] = i
	sh.ents[i].inSmall, sh.ents[i].slot = true, int32(s)
	sh.sused++
	sh.slive++
}

// popSmall removes and returns the small queue's oldest entry; the queue must not be empty.
func (sh *cacheShard) popSmall() int32 {
	for {
		i := sh.small[sh.shead]
		sh.small[sh.shead] = -1
		sh.shead = (sh.shead + 1) % len(sh.small)
		sh.sused--
		if i >= 0 {
			sh.slive--
			return i
		}
	}
}

// compactSmall moves the small queue's entries, in order, to the front of its buffer.
func (sh *cacheShard) compactSmall() {
	kept := make([]int32, 0, sh.slive)
	for k := range sh.sused {
		if i := sh.small[(sh.shead+k)%len(sh.small)]; i >= 0 {
			kept = append(kept, i)
		}
	}
	for s := range sh.small {
		sh.small[s] = -1
	}
	for s, i := range kept {
		sh.small[s], sh.ents[i].slot = i, int32(s)
	}
	sh.shead, sh.sused = 0, len(kept)
}
