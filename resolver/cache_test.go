package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

// fakeClock is the cache's clock in tests: time moves only when a test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type cacheCounts struct{ hit, miss, stale, prefetch, evict atomic.Int64 }

func (n *cacheCounts) observer() resolver.CacheObserver {
	inc := func(c *atomic.Int64) func() { return func() { c.Add(1) } }
	return resolver.CacheObserver{Hit: inc(&n.hit), Miss: inc(&n.miss), Stale: inc(&n.stale),
		Prefetch: inc(&n.prefetch), Evict: inc(&n.evict)}
}

// cacheEnv is a cache in front of a Forward to a real upstream on loopback.
type cacheEnv struct {
	srv   *resolvertest.Server
	fwd   *upstream.Forward
	cache *resolver.Cache
	chain resolver.Resolver
	clock *fakeClock
	n     *cacheCounts
}

func newCacheEnv(t *testing.T, h dns.Handler, o resolver.CacheOptions) *cacheEnv {
	t.Helper()
	env := &cacheEnv{srv: resolvertest.Start(t, h), clock: newFakeClock(), n: &cacheCounts{}}
	o.Now = env.clock.Now
	env.cache = resolver.NewCache(o, env.n.observer())
	t.Cleanup(env.cache.Close)
	env.fwd = &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, "udp://"+env.srv.Addr)}}
	env.chain = resolver.Chain(env.fwd, env.cache.Middleware())
	return env
}

func (e *cacheEnv) resolve(m *dns.Msg) (*resolver.Response, error) {
	return e.chain.Resolve(context.Background(), &resolver.Request{Msg: m, Received: time.Now()})
}

// want resolves m and checks the outcome and how many queries the upstream has seen since start.
func (e *cacheEnv) want(t *testing.T, m *dns.Msg, outcome resolver.Outcome, upstreamQueries int64) *resolver.Response {
	t.Helper()
	resp, err := e.resolve(m)
	if err != nil {
		t.Fatalf("%s: %v", m.Question[0].Name, err)
	}
	if resp.Outcome != outcome {
		t.Errorf("%s: outcome %v, want %v", m.Question[0].Name, resp.Outcome, outcome)
	}
	if got := e.srv.Queries(); got != upstreamQueries {
		t.Errorf("%s: upstream queries = %d, want %d", m.Question[0].Name, got, upstreamQueries)
	}
	return resp
}

// answerA answers A queries with 192.0.2.1 and the given TTL, others NODATA without SOA.
func answerA(ttl uint32) dns.HandlerFunc {
	return resolvertest.Reply(func(q dns.Question) []dns.RR {
		if q.Qtype != dns.TypeA {
			return nil
		}
		return []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A: net.IPv4(192, 0, 2, 1)}}
	})
}

// negative answers rcode (NXDOMAIN or NOERROR/NODATA) with, if soaTTL > 0, a SOA in authority.
func negative(rcode int, soaTTL, minimum uint32) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		if soaTTL > 0 {
			m.Ns = []dns.RR{&dns.SOA{
				Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: soaTTL},
				Ns:  "ns.example.", Mbox: "hostmaster.example.", Serial: 1, Refresh: 3600, Retry: 600,
				Expire: 86400, Minttl: minimum,
			}}
		}
		_ = w.WriteMsg(m)
	}
}

func ttl(t *testing.T, resp *resolver.Response) uint32 {
	t.Helper()
	if len(resp.Msg.Answer) == 0 {
		t.Fatalf("no answer: %v", resp.Msg)
	}
	return resp.Msg.Answer[0].Header().Ttl
}

func ede(m *dns.Msg) []uint16 {
	var codes []uint16
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				codes = append(codes, e.InfoCode)
			}
		}
	}
	return codes
}

func TestCacheHit(t *testing.T) {
	env := newCacheEnv(t, answerA(300), resolver.CacheOptions{})
	first := env.want(t, resolvertest.Query("a.example", dns.TypeA, false), resolver.OutcomeForwarded, 1)
	// A stage above may modify what it got; the cache must have kept its own copy.
	first.Msg.Answer[0].Header().Ttl = 1
	first.Msg.Answer[0].(*dns.A).A[3] = 99

	env.clock.Advance(10 * time.Second)
	resp := env.want(t, resolvertest.Query("a.example", dns.TypeA, false), resolver.OutcomeCached, 1)
	if got := ttl(t, resp); got != 290 {
		t.Errorf("TTL after 10s = %d, want 290", got)
	}
	if a := resp.Msg.Answer[0].(*dns.A).A.String(); a != "192.0.2.1" {
		t.Errorf("cached address = %s, want 192.0.2.1 (a caller's change leaked into the cache)", a)
	}
	if resp.Upstream != "udp://"+env.srv.Addr {
		t.Errorf("Upstream = %q, want the one that gave the answer", resp.Upstream)
	}
	if resp.Msg.Rcode != dns.RcodeSuccess || !resp.Msg.Response {
		t.Errorf("reply header: %v", resp.Msg.MsgHdr)
	}
	// Each hit gets its own copy too.
	resp.Msg.Answer[0].Header().Ttl = 7
	env.clock.Advance(time.Second)
	again := env.want(t, resolvertest.Query("a.example", dns.TypeA, false), resolver.OutcomeCached, 1)
	if got := ttl(t, again); got != 289 {
		t.Errorf("TTL after 11s = %d, want 289", got)
	}
	if h, m := env.n.hit.Load(), env.n.miss.Load(); h != 2 || m != 1 {
		t.Errorf("hits %d misses %d, want 2 and 1", h, m)
	}
}

func TestCacheKeyIgnoresCase(t *testing.T) {
	env := newCacheEnv(t, answerA(300), resolver.CacheOptions{})
	env.want(t, resolvertest.Query("MiXeD.Example", dns.TypeA, false), resolver.OutcomeForwarded, 1)
	resp := env.want(t, resolvertest.Query("mixed.EXAMPLE", dns.TypeA, false), resolver.OutcomeCached, 1)
	if got := resp.Msg.Question[0].Name; got != "mixed.EXAMPLE." {
		t.Errorf("question %q, want the asker's spelling", got)
	}
	// A different type or name is a different entry.
	env.want(t, resolvertest.Query("mixed.example", dns.TypeAAAA, false), resolver.OutcomeForwarded, 2)
	env.want(t, resolvertest.Query("mixed2.example", dns.TypeA, false), resolver.OutcomeForwarded, 3)
}

func TestCacheKeySplitsDOAndCD(t *testing.T) {
	// The upstream answers DNSSEC-aware queries differently, as a validating resolver would.
	h := func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		ip := net.IPv4(192, 0, 2, 1)
		if opt := r.IsEdns0(); opt != nil && opt.Do() {
			ip = net.IPv4(192, 0, 2, 2)
		}
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: ip}}
		_ = w.WriteMsg(m)
	}
	env := newCacheEnv(t, dns.HandlerFunc(h), resolver.CacheOptions{})
	do := func() *dns.Msg {
		m := resolvertest.Query("sig.example", dns.TypeA, true)
		m.IsEdns0().SetDo()
		return m
	}
	cd := func() *dns.Msg {
		m := resolvertest.Query("sig.example", dns.TypeA, false)
		m.CheckingDisabled = true
		return m
	}
	env.want(t, resolvertest.Query("sig.example", dns.TypeA, false), resolver.OutcomeForwarded, 1)
	env.want(t, do(), resolver.OutcomeForwarded, 2)
	env.want(t, cd(), resolver.OutcomeForwarded, 3)
	// EDNS without DO shares the plain entry: the Handler adds or drops the OPT record.
	plain := env.want(t, resolvertest.Query("sig.example", dns.TypeA, true), resolver.OutcomeCached, 3)
	withDO := env.want(t, do(), resolver.OutcomeCached, 3)
	env.want(t, cd(), resolver.OutcomeCached, 3)
	if a := plain.Msg.Answer[0].(*dns.A).A.String(); a != "192.0.2.1" {
		t.Errorf("non-DO query got %s, the DO answer", a)
	}
	if a := withDO.Msg.Answer[0].(*dns.A).A.String(); a != "192.0.2.2" {
		t.Errorf("DO query got %s, the non-DO answer", a)
	}
}

func TestCacheClearsADForClientsThatDidNotAsk(t *testing.T) {
	h := func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.AuthenticatedData = r.AuthenticatedData
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)}}
		_ = w.WriteMsg(m)
	}
	env := newCacheEnv(t, dns.HandlerFunc(h), resolver.CacheOptions{})
	q := resolvertest.Query("ad.example", dns.TypeA, false)
	q.AuthenticatedData = true
	env.want(t, q, resolver.OutcomeForwarded, 1)
	if resp := env.want(t, q, resolver.OutcomeCached, 1); !resp.Msg.AuthenticatedData {
		t.Error("AD cleared for a client that set AD")
	}
	if resp := env.want(t, resolvertest.Query("ad.example", dns.TypeA, false), resolver.OutcomeCached, 1); resp.Msg.AuthenticatedData {
		t.Error("AD set for a client that asked with neither AD nor DO (RFC 6840 §5.8)")
	}
}

func TestCacheExpiry(t *testing.T) {
	env := newCacheEnv(t, answerA(60), resolver.CacheOptions{})
	q := resolvertest.Query("exp.example", dns.TypeA, false)
	env.want(t, q, resolver.OutcomeForwarded, 1)
	env.clock.Advance(59 * time.Second)
	if got := ttl(t, env.want(t, q, resolver.OutcomeCached, 1)); got != 1 {
		t.Errorf("TTL at 59s = %d, want 1", got)
	}
	env.clock.Advance(time.Second)
	if got := ttl(t, env.want(t, q, resolver.OutcomeForwarded, 2)); got != 60 {
		t.Errorf("refetched TTL = %d, want 60", got)
	}
	if n := env.cache.Len(); n != 1 {
		t.Errorf("Len = %d, want 1 (the refetched entry replaced the expired one)", n)
	}
}

func TestCacheClampsTTL(t *testing.T) {
	t.Run("min", func(t *testing.T) {
		env := newCacheEnv(t, answerA(5), resolver.CacheOptions{MinTTL: time.Minute})
		q := resolvertest.Query("short.example", dns.TypeA, false)
		if got := ttl(t, env.want(t, q, resolver.OutcomeForwarded, 1)); got != 5 {
			t.Errorf("forwarded TTL = %d, want the upstream's 5", got)
		}
		env.clock.Advance(30 * time.Second)
		if got := ttl(t, env.want(t, q, resolver.OutcomeCached, 1)); got != 30 {
			t.Errorf("TTL = %d, want 60-30", got)
		}
		env.clock.Advance(30 * time.Second)
		env.want(t, q, resolver.OutcomeForwarded, 2)
	})
	t.Run("max", func(t *testing.T) {
		env := newCacheEnv(t, answerA(86400*7), resolver.CacheOptions{MaxTTL: 100 * time.Second})
		q := resolvertest.Query("long.example", dns.TypeA, false)
		env.want(t, q, resolver.OutcomeForwarded, 1)
		env.clock.Advance(99 * time.Second)
		if got := ttl(t, env.want(t, q, resolver.OutcomeCached, 1)); got != 1 {
			t.Errorf("TTL = %d, want 100-99", got)
		}
		env.clock.Advance(time.Second)
		env.want(t, q, resolver.OutcomeForwarded, 2)
	})
	t.Run("zero TTL is not cached", func(t *testing.T) {
		env := newCacheEnv(t, answerA(0), resolver.CacheOptions{})
		q := resolvertest.Query("zero.example", dns.TypeA, false)
		env.want(t, q, resolver.OutcomeForwarded, 1)
		env.want(t, q, resolver.OutcomeForwarded, 2)
	})
}

func TestCacheNegative(t *testing.T) {
	tests := []struct {
		name      string
		h         dns.HandlerFunc
		opts      resolver.CacheOptions
		cachedFor time.Duration // 0: not cached
		rcode     int
	}{
		{name: "NXDOMAIN for SOA MINIMUM", h: negative(dns.RcodeNameError, 3600, 60), cachedFor: time.Minute, rcode: dns.RcodeNameError},
		{name: "NXDOMAIN for SOA TTL", h: negative(dns.RcodeNameError, 30, 600), cachedFor: 30 * time.Second, rcode: dns.RcodeNameError},
		{name: "NXDOMAIN capped", h: negative(dns.RcodeNameError, 86400, 86400), opts: resolver.CacheOptions{NegativeMaxTTL: 2 * time.Minute},
			cachedFor: 2 * time.Minute, rcode: dns.RcodeNameError},
		{name: "NODATA", h: negative(dns.RcodeSuccess, 3600, 120), cachedFor: 2 * time.Minute, rcode: dns.RcodeSuccess},
		{name: "NXDOMAIN without SOA", h: negative(dns.RcodeNameError, 0, 0), rcode: dns.RcodeNameError},
		{name: "NODATA without SOA", h: negative(dns.RcodeSuccess, 0, 0), rcode: dns.RcodeSuccess},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newCacheEnv(t, tc.h, tc.opts)
			q := resolvertest.Query("nx.example", dns.TypeA, false)
			if resp := env.want(t, q, resolver.OutcomeForwarded, 1); resp.Msg.Rcode != tc.rcode {
				t.Fatalf("rcode %d, want %d", resp.Msg.Rcode, tc.rcode)
			}
			if tc.cachedFor == 0 {
				env.want(t, q, resolver.OutcomeForwarded, 2)
				return
			}
			env.clock.Advance(tc.cachedFor - time.Second)
			resp := env.want(t, q, resolver.OutcomeCached, 1)
			if resp.Msg.Rcode != tc.rcode || len(resp.Msg.Ns) != 1 {
				t.Fatalf("cached reply: %v", resp.Msg)
			}
			if got := resp.Msg.Ns[0].Header().Ttl; got != 1 {
				t.Errorf("SOA TTL 1s before expiry = %d, want 1 (clients take it as the negative TTL)", got)
			}
			env.clock.Advance(time.Second)
			env.want(t, q, resolver.OutcomeForwarded, 2)
		})
	}
}

func TestCacheServFail(t *testing.T) {
	t.Run("cached briefly", func(t *testing.T) {
		env := newCacheEnv(t, resolvertest.Rcode(dns.RcodeServerFailure), resolver.CacheOptions{ServFailTTL: 5 * time.Second})
		q := resolvertest.Query("broken.example", dns.TypeA, true)
		if _, err := env.resolve(q); !errors.Is(err, resolver.ErrUpstreamRcode) {
			t.Fatalf("first query: %v, want the upstream's SERVFAIL", err)
		}
		env.clock.Advance(4 * time.Second)
		resp := env.want(t, q, resolver.OutcomeCached, 1)
		if resp.Msg.Rcode != dns.RcodeServerFailure {
			t.Errorf("cached rcode %d, want SERVFAIL", resp.Msg.Rcode)
		}
		if got := ede(resp.Msg); len(got) != 1 || got[0] != dns.ExtendedErrorCodeCachedError {
			t.Errorf("EDE %v, want Cached Error", got)
		}
		env.clock.Advance(time.Second)
		if _, err := env.resolve(q); err == nil || env.srv.Queries() != 2 {
			t.Errorf("after ServFailTTL: err %v, upstream queries %d; want a new SERVFAIL from the upstream", err, env.srv.Queries())
		}
	})
	t.Run("off by default", func(t *testing.T) {
		env := newCacheEnv(t, resolvertest.Rcode(dns.RcodeServerFailure), resolver.CacheOptions{})
		q := resolvertest.Query("broken.example", dns.TypeA, false)
		for i := range 2 {
			if _, err := env.resolve(q); err == nil {
				t.Fatal("SERVFAIL not reported")
			}
			if got := env.srv.Queries(); got != int64(i+1) {
				t.Fatalf("upstream queries %d, want %d", got, i+1)
			}
		}
	})
	t.Run("timeouts are not cached", func(t *testing.T) {
		env := newCacheEnv(t, resolvertest.Silent(), resolver.CacheOptions{ServFailTTL: 5 * time.Second})
		env.fwd.AttemptTimeout = 50 * time.Millisecond
		q := resolvertest.Query("silent.example", dns.TypeA, false)
		for i := range 2 {
			if _, err := env.resolve(q); err == nil {
				t.Fatal("timeout not reported")
			}
			if got := env.srv.Queries(); got != int64(i+1) {
				t.Fatalf("upstream queries %d, want %d", got, i+1)
			}
		}
	})
}

func TestCacheSkipsTruncated(t *testing.T) {
	// Truncated over UDP and TCP alike: Forward returns the TC reply, which must not be kept
	// although its (partial) answer would be cacheable.
	h := func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Truncated = true
		m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: []string{"part"}}}
		_ = w.WriteMsg(m)
	}
	env := newCacheEnv(t, dns.HandlerFunc(h), resolver.CacheOptions{})
	q := resolvertest.Query("big.example", dns.TypeTXT, false)
	env.want(t, q, resolver.OutcomeForwarded, 2) // UDP, then TCP
	env.want(t, q, resolver.OutcomeForwarded, 4)
	if n := env.cache.Len(); n != 0 {
		t.Errorf("Len = %d, want 0", n)
	}
}

func TestCacheSkipsClientSubnetQueries(t *testing.T) {
	env := newCacheEnv(t, answerA(300), resolver.CacheOptions{})
	q := resolvertest.Query("ecs.example", dns.TypeA, true)
	q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(198, 51, 100, 0)})
	env.want(t, q, resolver.OutcomeForwarded, 1)
	env.want(t, q, resolver.OutcomeForwarded, 2)
	// Without the option the same question is cached.
	env.want(t, resolvertest.Query("ecs.example", dns.TypeA, true), resolver.OutcomeForwarded, 3)
	env.want(t, resolvertest.Query("ecs.example", dns.TypeA, true), resolver.OutcomeCached, 3)
}

func TestCacheStoresOnlyForwardedAnswers(t *testing.T) {
	for _, outcome := range []resolver.Outcome{resolver.OutcomeLocal, resolver.OutcomeBlocked, resolver.OutcomeRefused,
		resolver.OutcomeRateLimited, resolver.OutcomeError, resolver.OutcomeCached} {
		t.Run(outcome.String(), func(t *testing.T) {
			var calls atomic.Int64
			next := resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
				calls.Add(1)
				m := new(dns.Msg)
				m.SetReply(req.Msg)
				m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: req.Question().Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(0, 0, 0, 0)}}
				return &resolver.Response{Msg: m, Outcome: outcome}, nil
			})
			c := resolver.NewCache(resolver.CacheOptions{}, resolver.CacheObserver{})
			t.Cleanup(c.Close)
			chain := resolver.Chain(next, c.Middleware())
			for range 2 {
				resp, err := chain.Resolve(context.Background(), &resolver.Request{Msg: resolvertest.Query("x.example", dns.TypeA, false)})
				if err != nil || resp.Outcome != outcome {
					t.Fatalf("resp %v, err %v", resp, err)
				}
			}
			if calls.Load() != 2 || c.Len() != 0 {
				t.Errorf("next called %d times, Len %d; want 2 and 0", calls.Load(), c.Len())
			}
		})
	}
}

func TestCacheBelowBlock(t *testing.T) {
	// Blocked names never reach the cache; a list change takes effect for cached names at once.
	env := newCacheEnv(t, answerA(300), resolver.CacheOptions{})
	lists := &switchMatcher{}
	chain := resolver.Chain(env.fwd,
		resolver.Block(resolver.Blocker{Matcher: lists, Sinkhole: &resolver.Sinkhole{Mode: resolver.SinkholeNXDOMAIN}}),
		env.cache.Middleware())
	ask := func(outcome resolver.Outcome, upstream int64) {
		t.Helper()
		resp, err := chain.Resolve(context.Background(), &resolver.Request{Msg: resolvertest.Query("ads.example", dns.TypeA, false)})
		if err != nil || resp.Outcome != outcome || env.srv.Queries() != upstream {
			t.Fatalf("outcome %v err %v upstream %d; want %v and %d", resp.Outcome, err, env.srv.Queries(), outcome, upstream)
		}
	}
	ask(resolver.OutcomeForwarded, 1)
	ask(resolver.OutcomeCached, 1)
	lists.blocked.Store(true)
	ask(resolver.OutcomeBlocked, 1)
	lists.blocked.Store(false)
	ask(resolver.OutcomeCached, 1)
	if n := env.cache.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
}

type switchMatcher struct{ blocked atomic.Bool }

func (s *switchMatcher) Match(name string) (string, string, bool) {
	return "ads", name, s.blocked.Load()
}

func (s *switchMatcher) MatchIn(name string, _ uint64) (string, string, bool) { return s.Match(name) }

// flaky serves answerA(ttl) until told to fail with SERVFAIL or go silent.
type flaky struct {
	mode atomic.Int32 // 0 answer, 1 SERVFAIL, 2 silent
	ttl  uint32
}

func (f *flaky) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	switch f.mode.Load() {
	case 0:
		answerA(f.ttl).ServeDNS(w, r)
	case 1:
		answerServFail(w, r)
	}
}

func answerServFail(w dns.ResponseWriter, r *dns.Msg) {
	resolvertest.Rcode(dns.RcodeServerFailure).ServeDNS(w, r)
}

func TestCacheServeStale(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode int32
	}{{"servfail", 1}, {"silent", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			up := &flaky{ttl: 60}
			env := newCacheEnv(t, up, resolver.CacheOptions{ServeStale: true, StaleMaxAge: time.Hour})
			env.fwd.AttemptTimeout = 50 * time.Millisecond
			q := resolvertest.Query("stale.example", dns.TypeA, true)
			env.want(t, q, resolver.OutcomeForwarded, 1)

			up.mode.Store(tc.mode)
			env.clock.Advance(10 * time.Minute)
			resp := env.want(t, q, resolver.OutcomeCached, 2)
			if got := ttl(t, resp); got != 30 {
				t.Errorf("stale TTL = %d, want 30 (RFC 8767)", got)
			}
			if got := ede(resp.Msg); len(got) != 1 || got[0] != dns.ExtendedErrorCodeStaleAnswer {
				t.Errorf("EDE %v, want Stale Answer", got)
			}
			if n := env.n.stale.Load(); n != 1 {
				t.Errorf("stale count %d, want 1", n)
			}
			// Without EDNS, no OPT record to carry EDE.
			noEDNS := env.want(t, resolvertest.Query("stale.example", dns.TypeA, false), resolver.OutcomeCached, 2)
			if noEDNS.Msg.IsEdns0() != nil {
				t.Error("stale answer to a query without EDNS has an OPT record")
			}

			// For StaleAnswerTTL after a failed refresh, stale answers come without asking.
			env.clock.Advance(29 * time.Second)
			env.want(t, q, resolver.OutcomeCached, 2)
			env.clock.Advance(time.Second)
			env.want(t, q, resolver.OutcomeCached, 3)

			// The upstream is back: a fresh answer replaces the stale one.
			up.mode.Store(0)
			env.clock.Advance(30 * time.Second)
			if got := ttl(t, env.want(t, q, resolver.OutcomeForwarded, 4)); got != 60 {
				t.Errorf("fresh TTL %d, want 60", got)
			}
		})
	}
}

func TestCacheServeStaleNXDOMAIN(t *testing.T) {
	var fail atomic.Bool
	h := func(w dns.ResponseWriter, r *dns.Msg) {
		if fail.Load() {
			answerServFail(w, r)
			return
		}
		negative(dns.RcodeNameError, 60, 60)(w, r)
	}
	env := newCacheEnv(t, dns.HandlerFunc(h), resolver.CacheOptions{ServeStale: true})
	q := resolvertest.Query("gone.example", dns.TypeA, true)
	env.want(t, q, resolver.OutcomeForwarded, 1)
	fail.Store(true)
	env.clock.Advance(2 * time.Minute)
	resp := env.want(t, q, resolver.OutcomeCached, 2)
	if resp.Msg.Rcode != dns.RcodeNameError {
		t.Errorf("rcode %d, want NXDOMAIN", resp.Msg.Rcode)
	}
	if got := ede(resp.Msg); len(got) != 1 || got[0] != dns.ExtendedErrorCodeStaleNXDOMAINAnswer {
		t.Errorf("EDE %v, want Stale NXDOMAIN Answer", got)
	}
}

func TestCacheNoStaleBeyondMaxAge(t *testing.T) {
	up := &flaky{ttl: 60}
	env := newCacheEnv(t, up, resolver.CacheOptions{ServeStale: true, StaleMaxAge: time.Hour})
	q := resolvertest.Query("old.example", dns.TypeA, false)
	env.want(t, q, resolver.OutcomeForwarded, 1)
	up.mode.Store(1)
	env.clock.Advance(time.Minute + time.Hour)
	if resp, err := env.resolve(q); err == nil {
		t.Fatalf("got %v (%v), want the upstream's failure: the entry is beyond StaleMaxAge", resp.Msg, resp.Outcome)
	}
	if env.n.stale.Load() != 0 {
		t.Error("stale answer counted")
	}

	// Without ServeStale, expired entries are never served.
	up2 := &flaky{ttl: 60}
	env2 := newCacheEnv(t, up2, resolver.CacheOptions{})
	env2.want(t, q, resolver.OutcomeForwarded, 1)
	up2.mode.Store(1)
	env2.clock.Advance(61 * time.Second)
	if _, err := env2.resolve(q); err == nil {
		t.Fatal("stale answer without ServeStale")
	}
}

func TestCachePrefetch(t *testing.T) {
	var (
		block    atomic.Bool
		received = make(chan struct{}, 10)
		release  = make(chan struct{})
	)
	h := func(w dns.ResponseWriter, r *dns.Msg) {
		if block.Load() {
			received <- struct{}{}
			<-release
		}
		answerA(100)(w, r)
	}
	env := newCacheEnv(t, dns.HandlerFunc(h), resolver.CacheOptions{PrefetchHits: 2, PrefetchWindow: 0.1})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the upstream shuts down
	env.fwd.AttemptTimeout = time.Minute
	q := resolvertest.Query("hot.example", dns.TypeA, false)

	env.want(t, q, resolver.OutcomeForwarded, 1)
	env.clock.Advance(50 * time.Second)
	env.want(t, q, resolver.OutcomeCached, 1) // one hit, and not yet near expiry
	env.clock.Advance(41 * time.Second)       // 9s left: in the last 10%

	block.Store(true)
	done := make(chan *resolver.Response)
	go func() {
		resp, _ := env.resolve(q)
		done <- resp
	}()
	// The hit that starts the refresh is answered while the upstream holds the refresh.
	select {
	case resp := <-done:
		if resp == nil || resp.Outcome != resolver.OutcomeCached || ttl(t, resp) != 9 {
			t.Fatalf("hit during prefetch: %+v", resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hit that started a prefetch waited for it")
	}
	wait(t, received, "the refresh to reach the upstream")
	env.want(t, q, resolver.OutcomeCached, 2) // a third hit starts no second refresh
	once.Do(func() { close(release) })
	resolver.WaitCacheIdle(env.cache)

	if got := env.srv.Queries(); got != 2 {
		t.Errorf("upstream queries %d, want 2 (one refresh)", got)
	}
	if p, m := env.n.prefetch.Load(), env.n.miss.Load(); p != 1 || m != 1 {
		t.Errorf("prefetches %d misses %d, want 1 and 1", p, m)
	}
	// Past the old expiry the refreshed entry answers, aged from the refresh.
	env.clock.Advance(20 * time.Second)
	if got := ttl(t, env.want(t, q, resolver.OutcomeCached, 2)); got != 80 {
		t.Errorf("TTL %d, want 100-20 from the refresh", got)
	}
}

func TestCachePrefetchFailsOnce(t *testing.T) {
	up := &flaky{ttl: 100}
	env := newCacheEnv(t, up, resolver.CacheOptions{PrefetchHits: 1})
	q := resolvertest.Query("hot.example", dns.TypeA, false)
	env.want(t, q, resolver.OutcomeForwarded, 1)
	up.mode.Store(1) // SERVFAIL from now on
	env.clock.Advance(95 * time.Second)
	if resp, err := env.resolve(q); err != nil || resp.Outcome != resolver.OutcomeCached {
		t.Fatalf("hit: %v %v", resp, err)
	}
	resolver.WaitCacheIdle(env.cache)
	if got := env.srv.Queries(); got != 2 {
		t.Fatalf("upstream queries %d, want 2: the hit should have started a refresh", got)
	}
	// The refresh failed: the entry still answers until it expires, and is not refreshed again.
	for range 3 {
		env.clock.Advance(time.Second)
		if got := ttl(t, env.want(t, q, resolver.OutcomeCached, 2)); got > 4 {
			t.Errorf("TTL %d: the failed refresh replaced the entry", got)
		}
		resolver.WaitCacheIdle(env.cache)
	}
	if p := env.n.prefetch.Load(); p != 1 {
		t.Errorf("prefetches %d, want 1", p)
	}
}

func TestCacheEvicts(t *testing.T) {
	env := newCacheEnv(t, answerA(300), resolver.CacheOptions{MaxEntries: 8, Shards: 1})
	for i := range 20 {
		env.want(t, resolvertest.Query(fmt.Sprintf("n%d.example", i), dns.TypeA, false), resolver.OutcomeForwarded, int64(i+1))
		if n := env.cache.Len(); n > 8 {
			t.Fatalf("Len %d > MaxEntries 8", n)
		}
	}
	if n, e := env.cache.Len(), env.n.evict.Load(); n != 8 || e != 12 {
		t.Errorf("Len %d, evictions %d; want 8 and 12", n, e)
	}
	env.cache.Flush()
	if n := env.cache.Len(); n != 0 {
		t.Errorf("Len after Flush = %d", n)
	}
}

func TestCacheEvictionSparesHitEntries(t *testing.T) {
	env := newCacheEnv(t, answerA(300), resolver.CacheOptions{MaxEntries: 4, Shards: 1})
	q := func(name string) *dns.Msg { return resolvertest.Query(name, dns.TypeA, false) }
	for i, name := range []string{"a", "b", "c", "d"} {
		env.want(t, q(name), resolver.OutcomeForwarded, int64(i+1))
	}
	env.want(t, q("a"), resolver.OutcomeCached, 4)
	env.want(t, q("e"), resolver.OutcomeForwarded, 5) // evicts one not hit since stored
	env.want(t, q("a"), resolver.OutcomeCached, 5)
	if e := env.n.evict.Load(); e != 1 {
		t.Errorf("evictions %d, want 1", e)
	}
}

func TestCacheExpiredEntriesGoFirst(t *testing.T) {
	var ttls sync.Map
	h := resolvertest.Reply(func(q dns.Question) []dns.RR {
		v, _ := ttls.Load(strings.ToLower(q.Name))
		return []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: v.(uint32)}, A: net.IPv4(192, 0, 2, 1)}}
	})
	env := newCacheEnv(t, h, resolver.CacheOptions{MaxEntries: 2, Shards: 1})
	ttls.Store("short.", uint32(10))
	ttls.Store("long.", uint32(1000))
	ttls.Store("new.", uint32(1000))
	env.want(t, resolvertest.Query("long", dns.TypeA, false), resolver.OutcomeForwarded, 1)
	env.want(t, resolvertest.Query("long", dns.TypeA, false), resolver.OutcomeCached, 1)
	env.want(t, resolvertest.Query("short", dns.TypeA, false), resolver.OutcomeForwarded, 2)
	env.want(t, resolvertest.Query("short", dns.TypeA, false), resolver.OutcomeCached, 2)
	env.clock.Advance(time.Minute)
	env.want(t, resolvertest.Query("new", dns.TypeA, false), resolver.OutcomeForwarded, 3)
	env.want(t, resolvertest.Query("long", dns.TypeA, false), resolver.OutcomeCached, 3)
	if e := env.n.evict.Load(); e != 0 {
		t.Errorf("evictions %d, want 0: an expired entry is not a size eviction", e)
	}
}

// TestCacheConcurrent hits, expires, evicts, serves stale and prefetches from many goroutines at
// once; run with -race. Every caller modifies its reply, which must never show in another's.
func TestCacheConcurrent(t *testing.T) {
	clock := newFakeClock()
	var calls atomic.Int64
	next := resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		n := calls.Add(1)
		if n%3 == 0 {
			return nil, fmt.Errorf("%w: %w", resolver.ErrUpstreamsFailed, &resolver.RcodeError{Rcode: dns.RcodeServerFailure})
		}
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		q := req.Question()
		if n%5 == 0 {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3}, Ns: "ns.", Mbox: "h.", Minttl: 3}}
		} else {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: uint32(1 + n%4)}, A: net.IPv4(192, 0, 2, 1).To4()}}
		}
		return &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded, Upstream: "fake"}, nil
	})
	const maxEntries = 32
	var n cacheCounts
	c := resolver.NewCache(resolver.CacheOptions{MaxEntries: maxEntries, Shards: 4, ServeStale: true, StaleMaxAge: 5 * time.Second,
		ServFailTTL: time.Second, PrefetchHits: 2, PrefetchWindow: 0.5, Now: clock.Now}, n.observer())
	chain := resolver.Chain(next, c.Middleware())

	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for g := range 8 {
		wg.Go(func() {
			for i := range 1500 {
				if g == 0 && i%10 == 0 {
					clock.Advance(300 * time.Millisecond)
				}
				name := fmt.Sprintf("N%d.Example.", (i*7+g)%40)
				if i%2 == 0 {
					name = strings.ToLower(name)
				}
				req := &resolver.Request{Msg: resolvertest.Query(name, dns.TypeA, i%3 == 0)}
				resp, err := chain.Resolve(context.Background(), req)
				if err != nil {
					continue
				}
				if !strings.EqualFold(resp.Msg.Question[0].Name, name) {
					select {
					case errs <- fmt.Errorf("asked %s, reply for %s", name, resp.Msg.Question[0].Name):
					default:
					}
				}
				for _, rr := range resp.Msg.Answer {
					if !strings.EqualFold(rr.Header().Name, name) {
						select {
						case errs <- fmt.Errorf("asked %s, answer %s", name, rr):
						default:
						}
					}
					if rr.Header().Ttl == 12345 {
						select {
						case errs <- fmt.Errorf("another caller's change shows in %s (outcome %v)", rr, resp.Outcome):
						default:
						}
					}
					rr.Header().Ttl = 12345
					if a, ok := rr.(*dns.A); ok {
						if a.A[0] != 192 {
							select {
							case errs <- fmt.Errorf("another caller's change shows in %s (outcome %v)", rr, resp.Outcome):
							default:
							}
						}
						a.A[0] = 10
					}
				}
				resp.Msg.Answer = append(resp.Msg.Answer, nil)[:len(resp.Msg.Answer)]
				if n := c.Len(); i%20 == 0 && n > maxEntries {
					select {
					case errs <- fmt.Errorf("Len %d > %d", n, maxEntries):
					default:
					}
				}
			}
		})
	}
	wg.Wait()
	c.Close()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("hits %d misses %d stale %d prefetches %d evictions %d", n.hit.Load(), n.miss.Load(), n.stale.Load(), n.prefetch.Load(), n.evict.Load())
	if n.hit.Load() == 0 || n.miss.Load() == 0 || n.evict.Load() == 0 || n.stale.Load() == 0 || n.prefetch.Load() == 0 {
		t.Error("the run did not exercise every path")
	}
}

// TestCacheEntriesAreFewObjects: a cached answer is kept packed in a shard's slab, with no heap
// object of its own, because every object the cache holds is marked on every GC cycle (a
// *dns.Msg with a few records is about ten; an entry with its own key, record and answer was
// three). The answers here have three records each.
func TestCacheEntriesAreFewObjects(t *testing.T) {
	const n = 4000
	next := resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		for i := range 3 {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: req.Msg.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A: net.IPv4(192, 0, 2, byte(i))})
		}
		return &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded, Upstream: "udp://192.0.2.53:53"}, nil
	})
	// Built before measuring: only what the cache keeps is counted.
	reqs := make([]*resolver.Request, n)
	for i := range reqs {
		reqs[i] = &resolver.Request{Msg: resolvertest.Query(fmt.Sprintf("host-%d.example.", i), dns.TypeA, false), Received: time.Now()}
	}
	settle := func(ms *runtime.MemStats) {
		// Twice: cleanups and finalizers of earlier tests queued by the first collection free
		// their objects in the second, which would otherwise count against the cache.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(ms)
	}
	// measure fills a new cache and returns the heap objects it added per entry. Other tests'
	// goroutines may free objects meanwhile (the count can even fall): a negative count is
	// measured again rather than taken as a pass.
	measure := func() (objects, bytes float64, chain resolver.Resolver) {
		cache := resolver.NewCache(resolver.CacheOptions{MaxEntries: 4 * n}, resolver.CacheObserver{}) // room: shards fill unevenly
		t.Cleanup(cache.Close)
		chain = resolver.Chain(next, cache.Middleware())
		var before, after runtime.MemStats
		settle(&before)
		for _, req := range reqs {
			if _, err := chain.Resolve(context.Background(), req); err != nil {
				t.Fatal(err)
			}
		}
		settle(&after)
		if cache.Len() != n {
			t.Fatalf("Len %d, want %d", cache.Len(), n)
		}
		return (float64(after.HeapObjects) - float64(before.HeapObjects)) / n, (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / n, chain
	}
	perEntry, perBytes, chain := measure()
	for try := 1; perEntry < 0 && try < 5; try++ {
		perEntry, perBytes, chain = measure()
	}
	t.Logf("%.1f heap objects and %.0f bytes per entry", perEntry, perBytes)
	if perEntry < 0 || perEntry > 0.5 {
		t.Errorf("%.2f heap objects per cache entry, want 0 to 0.5 (slab chunks and bookkeeping)", perEntry)
	}
	// And the answers still come out whole.
	resp, err := chain.Resolve(context.Background(), reqs[7])
	if err != nil || resp.Outcome != resolver.OutcomeCached || len(resp.Msg.Answer) != 3 || resp.Msg.Answer[2].(*dns.A).A.String() != "192.0.2.2" {
		t.Fatalf("hit: %v %v", resp, err)
	}
	runtime.KeepAlive(reqs)
}

// TestCacheScanResistant: names asked once (a scan of unique names, a client enumerating a zone)
// pass through the small queue and leave the names that clients keep asking for cached.
func TestCacheScanResistant(t *testing.T) {
	env := newCacheEnv(t, answerA(3600), resolver.CacheOptions{MaxEntries: 100, Shards: 1})
	q := func(name string) *dns.Msg { return resolvertest.Query(name, dns.TypeA, false) }
	upstream := int64(0)
	for i := range 20 {
		upstream++
		env.want(t, q(fmt.Sprintf("hot%d.example", i)), resolver.OutcomeForwarded, upstream)
		env.want(t, q(fmt.Sprintf("hot%d.example", i)), resolver.OutcomeCached, upstream)
	}
	for i := range 1000 {
		upstream++
		env.want(t, q(fmt.Sprintf("scan%d.example", i)), resolver.OutcomeForwarded, upstream)
		if n := env.cache.Len(); n > 100 {
			t.Fatalf("Len %d > MaxEntries 100", n)
		}
	}
	for i := range 20 {
		env.want(t, q(fmt.Sprintf("hot%d.example", i)), resolver.OutcomeCached, upstream)
	}
	if n := env.cache.Len(); n != 100 {
		t.Errorf("Len %d after the scan, want the cache full (100)", n)
	}
}

// TestNilCacheHasNoStage: without a cache (cache.max_entries: 0) the chain has no cache stage.
func TestNilCacheHasNoStage(t *testing.T) {
	if (*resolver.Cache)(nil).Middleware() != nil {
		t.Error("a nil *Cache returned a stage")
	}
}
