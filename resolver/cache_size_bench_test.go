package resolver_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// BenchmarkCacheEntryBytes reports the heap one cached entry takes (a typical answer: a CNAME and
// two addresses, benchReply), the figure the README and configs/dnsfence.yaml quote for
// cache.max_entries.
func BenchmarkCacheEntryBytes(b *testing.B) {
	const n = 20000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := resolver.NewCache(resolver.CacheOptions{MaxEntries: n}, resolver.CacheObserver{})
		chain := fillCache(b, c, n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entry")
		runtime.KeepAlive(chain)
		c.Close()
	}
}

// BenchmarkCacheGC reports what a full collection costs with a full cache (20,000 typical
// answers) against an empty one: the mark work a cache adds to every cycle. On one CPU the
// answers given during a collection wait for it.
func BenchmarkCacheGC(b *testing.B) {
	for _, n := range []int{0, 20000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			c := resolver.NewCache(resolver.CacheOptions{MaxEntries: max(n, 1)}, resolver.CacheObserver{})
			defer c.Close()
			chain := fillCache(b, c, n)
			runtime.GC()
			for b.Loop() {
				runtime.GC()
			}
			runtime.KeepAlive(chain)
		})
	}
}

// fillCache stores n typical answers (benchReply) in c and returns the chain that did it.
func fillCache(b *testing.B, c *resolver.Cache, n int) resolver.Resolver {
	chain := resolver.Chain(benchNext, c.Middleware())
	for i := range n {
		req := &resolver.Request{Msg: resolvertest.Query(fmt.Sprintf("host%d.example.com", i), dns.TypeA, true)}
		if _, err := chain.Resolve(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	return chain
}
