package resolver_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/listen"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

// TestHandlerBadVers: a query with an EDNS version other than 0 gets BADVERS with an OPT of
// version 0 and no answer, and never reaches the rest of the chain (RFC 6891 §6.1.3).
func TestHandlerBadVers(t *testing.T) {
	var reached atomic.Int64
	ts := resolvertest.Serve(t, resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
		reached.Add(1)
		return resolvertest.Answers(1).Resolve(ctx, req)
	}), listen.Options{})
	q := resolvertest.Query("a.example", dns.TypeA, true)
	q.IsEdns0().SetVersion(1)
	r := resolvertest.Exchange(t, "udp", ts.Addr, q)
	if opt := r.IsEdns0(); r.Rcode != dns.RcodeBadVers || opt == nil || opt.Version() != 0 || len(r.Answer) != 0 || reached.Load() != 0 {
		t.Fatalf("rcode %s, OPT %v, %d answers, chain reached %d times", dns.RcodeToString[r.Rcode], opt, len(r.Answer), reached.Load())
	}
}

// TestTSIGQueryForwardedUnchangedAndNotCached: the forwarder sends a signed query with its TSIG
// (MAC included) as the client sent it, and the cache neither answers nor stores it.
func TestTSIGQueryForwardedUnchangedAndNotCached(t *testing.T) {
	var macs atomic.Value
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if ts := r.IsTsig(); ts != nil {
			macs.Store(ts.MAC)
		}
		resolvertest.A("192.0.2.1")(w, r) // cacheable: only the TSIG keeps it out of the cache
	}))
	u, err := upstream.Parse(up.Addr, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := resolver.NewCache(resolver.CacheOptions{MaxEntries: 100}, resolver.CacheObserver{})
	t.Cleanup(c.Close)
	chain := resolver.Chain(&upstream.Forward{Upstreams: []upstream.Upstream{u}}, c.Middleware())
	q := resolvertest.Query("signed.example", dns.TypeA, true)
	q.SetTsig("key.", dns.HmacSHA256, 300, time.Now().Unix())
	signed, _, err := dns.TsigGenerate(q, "c2VjcmV0", "", false)
	if err != nil {
		t.Fatal(err)
	}
	q = new(dns.Msg)
	if err := q.Unpack(signed); err != nil {
		t.Fatal(err)
	}
	mac := q.IsTsig().MAC
	for i := range 2 {
		resp, err := chain.Resolve(context.Background(), &resolver.Request{Msg: q})
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if resp.Outcome != resolver.OutcomeForwarded || resp.Msg.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d: %v %v", i, resp, err)
		}
	}
	if got, _ := macs.Load().(string); got != mac || up.Queries() != 2 {
		t.Fatalf("upstream saw MAC %q (want %q) in %d queries (want 2: never from the cache)", got, mac, up.Queries())
	}
}
