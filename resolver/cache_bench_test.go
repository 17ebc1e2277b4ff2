package resolver_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// benchReply is a typical forwarded answer: a CNAME and two addresses.
func benchReply(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	name := req.Question[0].Name
	m.Answer = []dns.RR{
		&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300}, Target: "edge.cdn.example.net."},
		&dns.A{Hdr: dns.RR_Header{Name: "edge.cdn.example.net.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1).To4()},
		&dns.A{Hdr: dns.RR_Header{Name: "edge.cdn.example.net.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 2).To4()},
	}
	m.SetEdns0(resolver.EDNSBufferSize, false)
	return m
}

// benchNext answers without a network, so the benchmarks measure the cache.
var benchNext = resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
	return &resolver.Response{Msg: benchReply(req.Msg), Outcome: resolver.OutcomeForwarded, Upstream: "udp://192.0.2.53:53"}, nil
})

func benchCache(b *testing.B, o resolver.CacheOptions) resolver.Resolver {
	c := resolver.NewCache(o, resolver.CacheObserver{})
	b.Cleanup(c.Close)
	return resolver.Chain(benchNext, c.Middleware())
}

func BenchmarkCacheHit(b *testing.B) {
	chain := benchCache(b, resolver.CacheOptions{})
	ctx := context.Background()
	req := &resolver.Request{Msg: resolvertest.Query("WWW.Example.COM", dns.TypeA, true)}
	if _, err := chain.Resolve(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := chain.Resolve(ctx, req)
		if err != nil || resp.Outcome != resolver.OutcomeCached {
			b.Fatal(resp, err)
		}
	}
}

func BenchmarkCacheHitParallel(b *testing.B) {
	chain := benchCache(b, resolver.CacheOptions{})
	ctx := context.Background()
	reqs := make([]*resolver.Request, 1024)
	for i := range reqs {
		reqs[i] = &resolver.Request{Msg: resolvertest.Query(fmt.Sprintf("host%d.example.com", i), dns.TypeA, true)}
		if _, err := chain.Resolve(ctx, reqs[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			resp, err := chain.Resolve(ctx, reqs[i%len(reqs)])
			if err != nil || resp.Outcome != resolver.OutcomeCached {
				b.Error(resp, err)
				return
			}
			i += 7
		}
	})
}

// BenchmarkCacheMiss is a miss with a next stage that answers at once: lookup, the shared
// fetch, storing and eviction (the cache is full after 10000 names).
func BenchmarkCacheMiss(b *testing.B) {
	chain := benchCache(b, resolver.CacheOptions{})
	ctx := context.Background()
	reqs := make([]*resolver.Request, b.N)
	for i := range reqs {
		reqs[i] = &resolver.Request{Msg: resolvertest.Query(fmt.Sprintf("host%d.example.com", i), dns.TypeA, true)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		resp, err := chain.Resolve(ctx, reqs[i])
		if err != nil || resp.Outcome != resolver.OutcomeForwarded {
			b.Fatal(resp, err)
		}
	}
}

// BenchmarkNoCache is the same query answered by next alone, for comparison with the miss.
func BenchmarkNoCache(b *testing.B) {
	ctx := context.Background()
	req := &resolver.Request{Msg: resolvertest.Query("www.example.com", dns.TypeA, true)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := benchNext.Resolve(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCoalesceAlone is Coalesce with no concurrent twin: its cost on every miss.
func BenchmarkCoalesceAlone(b *testing.B) {
	chain := resolver.Chain(benchNext, resolver.Coalesce(time.Second))
	ctx := context.Background()
	req := &resolver.Request{Msg: resolvertest.Query("www.example.com", dns.TypeA, true)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := chain.Resolve(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoredForm compares the two ways a hit can get its own message: a deep copy of a
// stored *dns.Msg or unpacking stored wire bytes. Unpacking allocates every name again and took
// about three times as long, so the cache stores messages.
func BenchmarkStoredForm(b *testing.B) {
	stored := benchReply(resolvertest.Query("www.example.com", dns.TypeA, true))
	wire, err := stored.Pack()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = stored.Copy()
		}
	})
	b.Run("unpack", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := new(dns.Msg)
			if err := m.Unpack(wire); err != nil {
				b.Fatal(err)
			}
		}
	})
}
