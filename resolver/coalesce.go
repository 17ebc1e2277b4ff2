package resolver

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// defaultFetchTimeout bounds a shared exchange when the caller sets none: the Handler's default
// query timeout, so a shared exchange lasts no longer than a lone client's would.
const defaultFetchTimeout = 5 * time.Second

// Coalesce returns a stage that lets identical concurrent queries (same name in any case, type,
// class, DO and CD bits) share one call to next. Followers get their own copy of the reply.
//
// The first query (the leader) makes the shared call itself, on a context detached from every
// client's and bounded by timeout (zero means 5s), so one client's cancellation cannot fail the
// others. A follower whose context ends stops waiting and gets its context's error; the leader
// returns when the shared call does, even if its own context ended first. Queries with an EDNS
// Client Subnet option are not shared.
//
// Stages below must answer by the question alone (not by client or group): only the first
// client's Request reaches them. The Cache coalesces its own misses, so it needs no Coalesce below.
func Coalesce(timeout time.Duration) Middleware {
	return coalesce(newCoalescer(timeout, newBackground()))
}

func coalesce(co *coalescer) Middleware {
	seed := maphash.MakeSeed()
	return func(next Resolver) Resolver {
		fetch := func(ctx context.Context, _ *qkey, req *Request) (*Response, error) { return next.Resolve(ctx, req) }
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			k, ok := makeKey(seed, req.Msg)
			if !ok {
				return next.Resolve(ctx, req)
			}
			return co.do(ctx, k, req, fetch)
		})
	}
}

// fetchFunc is the exchange a flight runs for the question k.
type fetchFunc func(ctx context.Context, k *qkey, req *Request) (*Response, error)

// coalescer tracks the exchanges in flight by key, in shards so that unrelated misses do not
// contend on one lock.
type coalescer struct {
	shards  [flightShards]flightShard
	timeout time.Duration
	bg      *background
	// Flights that nobody joined, for the next miss: most misses are alone.
	spare sync.Pool
	// onJoin, if set, is called when a query joins a flight already running (a test hook).
	onJoin func()
}

const flightShards = 32 // power of two

type flightShard struct {
	mu sync.Mutex
	m  map[uint64]*flight
	_  [40]byte // keeps neighbouring shards' locks off one cache line
}

// flight is one shared exchange. resp and err are written once, before done is closed.
type flight struct {
	key qkey
	// done is made by the first follower (under the shard lock), so that a flight nobody joins,
	// most of them, costs no channel.
	done chan struct{}
	resp *Response
	err  error
	// dups counts the followers (under the shard lock); shared is its final value > 0, set when
	// the flight leaves the map, after which nobody can join.
	dups   int
	shared bool
}

func newCoalescer(timeout time.Duration, bg *background) *coalescer {
	if timeout <= 0 {
		timeout = defaultFetchTimeout
	}
	co := &coalescer{timeout: timeout, bg: bg}
	for i := range co.shards {
		co.shards[i].m = make(map[uint64]*flight)
	}
	return co
}

func (co *coalescer) shard(h uint64) *flightShard { return &co.shards[h&(flightShards-1)] }

// join returns the flight for k: an existing one (leader false) or a new one the caller must
// start (leader true). It returns nil when a different question with the same hash is in flight.
func (co *coalescer) join(k *qkey) (f *flight, leader bool) {
	sh := co.shard(k.hash)
	sh.mu.Lock()
	if f, ok := sh.m[k.hash]; ok {
		if !f.key.equal(k) {
			sh.mu.Unlock()
			return nil, false
		}
		f.dups++
		if f.done == nil {
			f.done = make(chan struct{})
		}
		sh.mu.Unlock()
		if co.onJoin != nil {
			co.onJoin()
		}
		return f, false
	}
	f, _ = co.spare.Get().(*flight)
	if f == nil {
		f = new(flight)
	}
	f.key = *k
	sh.m[k.hash] = f
	sh.mu.Unlock()
	return f, true
}

// do answers req through the flight for k, running fn if there is none.
func (co *coalescer) do(ctx context.Context, k qkey, req *Request, fn fetchFunc) (*Response, error) {
	f, leader := co.join(&k)
	switch {
	case f == nil:
		alone := k
		return fn(ctx, &alone, req)
	case leader:
		co.lead(ctx, f, req, fn)
	default:
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a shared query: %w", context.Cause(ctx))
		}
	}
	if f.resp == nil || leader && !f.shared {
		resp, err := f.resp, f.err
		if leader && !f.shared {
			// Out of the map and never joined: nobody else holds f.
			*f = flight{}
			co.spare.Put(f)
		}
		return resp, err
	}
	// Several clients take this reply and each may modify it (the Handler does): copies only.
	r := *f.resp
	if r.Msg != nil {
		r.Msg = r.Msg.Copy()
	}
	return &r, f.err
}

// detached starts a flight for k with nobody waiting (a prefetch) unless one is running already.
// It reports whether it started one.
func (co *coalescer) detached(k qkey, req *Request, fn fetchFunc) bool {
	f, leader := co.join(&k)
	if !leader {
		return false
	}
	if !co.start(f, req, fn) {
		f.err = errClosed // for any query that joined meanwhile
		co.finish(f)
		return false
	}
	return true
}

// lead runs f in the leader's goroutine (no hand-off to another goroutine on every miss) but on
// a context of its own: Close cancels it, the timeout bounds it.
func (co *coalescer) lead(ctx context.Context, f *flight, req *Request, fn fetchFunc) {
	if !co.bg.enter() {
		co.run(ctx, f, req, fn, true) // closed: no detached work any more
		return
	}
	defer co.bg.leave()
	start := req.Received // read the clock once per query, not in every stage
	if start.IsZero() {
		start = time.Now()
	}
	fctx := newQueryContextIn(co.bg.ctx, start.Add(co.timeout))
	defer fctx.cancel()
	co.run(fctx, f, req, fn, true)
}

// start runs the flight in a goroutine; false once the background is closed.
func (co *coalescer) start(f *flight, req *Request, fn fetchFunc) bool {
	return co.bg.Go(func(base context.Context) {
		ctx, cancel := context.WithTimeout(base, co.timeout)
		defer cancel()
		co.run(ctx, f, req, fn, false)
	})
}

// run calls fn and completes f. A panic in the background becomes the flight's error (nothing
// above would recover it); inline, it is passed on to the caller's recover once f is complete.
func (co *coalescer) run(ctx context.Context, f *flight, req *Request, fn fetchFunc, inline bool) {
	defer func() {
		if v := recover(); v != nil {
			f.resp, f.err = nil, fmt.Errorf("panic in shared query: %v\n%s", v, debug.Stack())
			co.finish(f)
			if inline {
				panic(v)
			}
			return
		}
		co.finish(f)
	}()
	f.resp, f.err = fn(ctx, &f.key, req)
}

// finish takes f out of the map, fixes whether it was shared and wakes the waiters.
func (co *coalescer) finish(f *flight) {
	sh := co.shard(f.key.hash)
	sh.mu.Lock()
	if sh.m[f.key.hash] == f {
		delete(sh.m, f.key.hash)
	}
	f.shared = f.dups > 0
	done := f.done
	sh.mu.Unlock()
	if done != nil {
		close(done)
	}
}

var errClosed = errors.New("resolver: cache closed")

// background tracks work detached from clients' contexts (shared fetches, prefetches), which
// Close cancels and waits for.
type background struct {
	mu     sync.RWMutex // read-held to enter, so nothing enters once Close has begun
	closed bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

func newBackground() *background {
	ctx, cancel := context.WithCancel(context.Background())
	return &background{ctx: ctx, cancel: cancel}
}

// enter registers work that Close must wait for; false if closed. Each enter needs a leave.
func (b *background) enter() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	return true
}

func (b *background) leave() { b.wg.Done() }

// Go runs f in a goroutine with a context that Close cancels; false if closed.
func (b *background) Go(f func(ctx context.Context)) bool {
	if !b.enter() {
		return false
	}
	go func() {
		defer b.leave()
		f(b.ctx)
	}()
	return true
}

// Close cancels the running goroutines' context and waits for them to return.
func (b *background) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}

// qkey identifies a question for the cache and for coalescing. hash covers the case-folded name,
// type, class and flags; the rest is kept to tell apart the rare questions whose hashes collide.
type qkey struct {
	hash          uint64
	name          string // as asked: compared case-insensitively
	qtype, qclass uint16
	flags         uint8
	edns          bool // the query has an OPT record (not part of the key: the Handler adds or drops OPT)
}

// Key flags: answers to DNSSEC-aware (DO) and checking-disabled (CD) queries differ.
const (
	keyDO uint8 = 1 << iota
	keyCD
)

// maxKeyName bounds the names the cache handles: a name of 255 octets in presentation format,
// every octet escaped (\DDD), stays below it. Longer ones cannot come off the wire.
const maxKeyName = 1024

// makeKey returns m's key; ok is false for queries that must not be cached or shared: not exactly
// one question, an implausibly long name, or an EDNS Client Subnet option (the answer may be
// meant for that subnet only).
func makeKey(seed maphash.Seed, m *dns.Msg) (k qkey, ok bool) {
	// A TSIG-signed reply is for the one client who signed the query: never shared or cached.
	if len(m.Question) != 1 || m.IsTsig() != nil {
		return k, false
	}
	q := m.Question[0]
	if len(q.Name) > maxKeyName {
		return k, false
	}
	if m.CheckingDisabled {
		k.flags |= keyCD
	}
	if opt := m.IsEdns0(); opt != nil {
		k.edns = true
		if opt.Do() {
			k.flags |= keyDO
		}
		for _, o := range opt.Option {
			if o.Option() == dns.EDNS0SUBNET {
				return k, false
			}
		}
	}
	// Hash a lower-cased copy in a stack buffer: strings.ToLower would allocate for every
	// 0x20-randomized name.
	var buf [maxKeyName + 5]byte
	n := len(q.Name)
	for i := 0; i < n; i++ {
		c := q.Name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	buf[n], buf[n+1] = byte(q.Qtype>>8), byte(q.Qtype)
	buf[n+2], buf[n+3] = byte(q.Qclass>>8), byte(q.Qclass)
	buf[n+4] = k.flags
	k.hash = maphash.Bytes(seed, buf[:n+5])
	k.name, k.qtype, k.qclass = q.Name, q.Qtype, q.Qclass
	return k, true
}

func (k *qkey) equal(o *qkey) bool {
	return k.hash == o.hash && k.qtype == o.qtype && k.qclass == o.qclass && k.flags == o.flags &&
		equalFoldASCII(k.name, o.name)
}

// equalFoldASCII compares names case-insensitively in ASCII, as DNS does (RFC 4343); other
// octets appear escaped in presentation format. a may be bytes (the cache's stored name), so
// that comparing does not convert them to a string: a conversion copies the name, and allocates
// for one longer than 32 bytes.
func equalFoldASCII[T ~string | ~[]byte](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
