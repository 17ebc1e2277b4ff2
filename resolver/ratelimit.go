package resolver

import (
	"context"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// RateLimit configures per-client rate limiting.
type RateLimit struct {
	// ClientQPS and ClientBurst bound one client address; zero QPS disables that level.
	ClientQPS, ClientBurst float64
	// PrefixQPS and PrefixBurst bound all clients in one /24 (IPv4) or /56 (IPv6) together, so a
	// spoofed flood spread over many addresses is still limited; zero QPS disables that level.
	PrefixQPS, PrefixBurst float64
	// Slip: every Slip-th limited UDP query gets an empty truncated reply (TC) instead of
	// silence, so a real client behind a limited address retries over TCP (RRL-style); the rest
	// get nothing. Zero drops them all. TCP queries are never limited: a spoofed source cannot
	// complete a TCP handshake.
	Slip int
	// MaxEntries bounds the tracked addresses and prefixes (memory under a spoofed flood);
	// zero means 100000.
	MaxEntries int
}

// Limiter state: shards of buckets so concurrent queries rarely share a lock.
const rateShards = 64

type rateLimiter struct {
	cfg    RateLimit
	seed   maphash.Seed
	shards [rateShards]rateShard
	slip   atomic.Uint64
	now    func() time.Time
}

type rateShard struct {
	mu      sync.Mutex
	buckets map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds
}

// RateLimiter returns the rate-limiting stage. now is the clock (nil: time.Now).
func RateLimiter(cfg RateLimit, now func() time.Time) Middleware {
	rl := newRateLimiter(cfg, now)
	return func(next Resolver) Resolver {
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			if req.Transport == TCP || rl.allow(req.Client) {
				return next.Resolve(ctx, req)
			}
			m := new(dns.Msg)
			m.SetReply(req.Msg)
			resp := &Response{Msg: m, Outcome: OutcomeRateLimited, Drop: true}
			if rl.cfg.Slip > 0 && rl.slip.Add(1)%uint64(rl.cfg.Slip) == 0 {
				m.Truncated = true
				resp.Drop = false
			}
			return resp, nil
		})
	}
}

func newRateLimiter(cfg RateLimit, now func() time.Time) *rateLimiter {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100000
	}
	if now == nil {
		now = time.Now
	}
	rl := &rateLimiter{cfg: cfg, seed: maphash.MakeSeed(), now: now}
	for i := range rl.shards {
		rl.shards[i].buckets = map[netip.Prefix]*bucket{}
	}
	return rl
}

// allow takes one token from the client's bucket and from its prefix's bucket.
func (rl *rateLimiter) allow(client netip.Addr) bool {
	client = client.Unmap()
	now := rl.now().UnixNano()
	ok := true
	if rl.cfg.ClientQPS > 0 {
		ok = rl.take(netip.PrefixFrom(client, client.BitLen()), rl.cfg.ClientQPS, rl.cfg.ClientBurst, now)
	}
	if ok && rl.cfg.PrefixQPS > 0 {
		bits := 24
		if client.Is6() {
			bits = 56
		}
		p, _ := client.Prefix(bits)
		ok = rl.take(p, rl.cfg.PrefixQPS, rl.cfg.PrefixBurst, now)
	}
	return ok
}

func (rl *rateLimiter) take(key netip.Prefix, qps, burst float64, now int64) bool {
	burst = max(burst, 1)
	sh := &rl.shards[maphash.Comparable(rl.seed, key)%rateShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.buckets[key]
	if !ok {
		if len(sh.buckets) >= rl.cfg.MaxEntries/rateShards+1 {
			sh.evict(now, qps, burst)
		}
		b = &bucket{tokens: burst, last: now}
		sh.buckets[key] = b
	}
	b.tokens = min(burst, b.tokens+float64(now-b.last)/float64(time.Second)*qps)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evict forgets buckets that have refilled (forgetting them changes nothing); if none has, it
// forgets an arbitrary half, which under a spoofed flood only makes the limiter more lenient
// to addresses that are not sending anyway.
func (sh *rateShard) evict(now int64, qps, burst float64) {
	full := int64(burst / qps * float64(time.Second))
	n := 0
	for k, b := range sh.buckets {
		if now-b.last >= full {
			delete(sh.buckets, k)
			n++
		}
	}
	if n > 0 {
		return
	}
	half := len(sh.buckets) / 2
	for k := range sh.buckets {
		if half == 0 {
			break
		}
		delete(sh.buckets, k)
		half--
	}
}
