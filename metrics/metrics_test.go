package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsfence/dnsfence/resolver"
)

func newTest(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func TestLint(t *testing.T) {
	m, reg := newTest(t)
	// Touch every vector so each family has a series to lint.
	m.ObserveUpstream("udp://192.0.2.1:53", time.Millisecond, context.DeadlineExceeded)
	m.ListLoaded("ads", 3, 1, nil, time.Now())
	m.ListLoaded("ads", 3, 1, errors.New("gone"), time.Now())
	m.InvalidPacket(nil, nil)
	m.Panic()
	m.Overload()
	m.ConfigLoaded(true, time.Now())
	m.ConfigLoaded(false, time.Now())
	m.InitUpstream("udp://192.0.2.1:53")
	m.UpstreamHealthy("udp://192.0.2.1:53", false)
	m.InitList("ads", "", []string{"default"})
	m.ListInterval("ads", time.Hour)
	m.ListRules("ads", map[string]int{"domain": 3, "regex": 1})
	m.ObserveUpstream("udp://192.0.2.1:53", time.Millisecond, nil)
	m.CacheHit()
	m.CacheMiss()
	m.CacheStale()
	m.CachePrefetch()
	m.CacheEvict()
	m.CacheSize(func() int { return 7 })
	m.Paused(true)
	r := m.Middleware()(resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		return &resolver.Response{Msg: new(dns.Msg).SetReply(req.Msg), Outcome: resolver.OutcomeBlocked, List: "ads"}, nil
	}))
	q := new(dns.Msg).SetQuestion("x.", dns.TypeA)
	if _, err := r.Resolve(context.Background(), &resolver.Request{Msg: q, Received: time.Now()}); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestMiddlewareCounts(t *testing.T) {
	m, _ := newTest(t)
	fail := errors.New("boom")
	var next resolver.ResolverFunc = func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		switch req.Question().Name {
		case "blocked.":
			return &resolver.Response{Msg: new(dns.Msg).SetRcode(req.Msg, dns.RcodeNameError), Outcome: resolver.OutcomeBlocked, List: "ads"}, nil
		case "error.":
			return nil, fail
		}
		return &resolver.Response{Msg: new(dns.Msg).SetReply(req.Msg), Outcome: resolver.OutcomeForwarded}, nil
	}
	r := m.Middleware()(next)
	for _, name := range []string{"blocked.", "blocked.", "ok.", "error."} {
		q := new(dns.Msg).SetQuestion(name, dns.TypeAAAA)
		_, err := r.Resolve(context.Background(), &resolver.Request{Msg: q, Received: time.Now()})
		if (name == "error.") != errors.Is(err, fail) {
			t.Fatalf("%s: err %v not passed through", name, err)
		}
	}
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"AAAA", "NXDOMAIN", "blocked", "udp", "default"}, 2},
		{[]string{"AAAA", "NOERROR", "forwarded", "udp", "default"}, 1},
		{[]string{"AAAA", "SERVFAIL", "error", "udp", "default"}, 1},
	} {
		if got := testutil.ToFloat64(m.queries.WithLabelValues(tc.labels...)); got != tc.want {
			t.Errorf("queries%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if got := testutil.ToFloat64(m.blocked.WithLabelValues("ads", "other", "default")); got != 2 {
		t.Errorf("blocked{ads} = %v", got)
	}
}

func TestObserveUpstreamReasons(t *testing.T) {
	m, _ := newTest(t)
	const up = "udp://192.0.2.1:53"
	m.ObserveUpstream(up, time.Millisecond, nil)
	m.ObserveUpstream(up, time.Millisecond, fmt.Errorf("x: %w", &resolver.RcodeError{Rcode: dns.RcodeServerFailure}))
	m.ObserveUpstream(up, time.Millisecond, fmt.Errorf("x: %w", context.DeadlineExceeded))
	if got := testutil.ToFloat64(m.upstreamErrors.WithLabelValues(up, "servfail")); got != 1 {
		t.Errorf("servfail errors = %v", got)
	}
	if got := testutil.ToFloat64(m.upstreamErrors.WithLabelValues(up, "timeout")); got != 1 {
		t.Errorf("timeout errors = %v", got)
	}
	if n := testutil.CollectAndCount(m.upstreamErrors); n != 2 {
		t.Errorf("%d error series, want 2 (a success is not an error)", n)
	}
}

func TestLabelsAreBounded(t *testing.T) {
	seen := map[string]bool{}
	for qt := range uint16(65535) {
		seen[qtypeLabel(qt)] = true
	}
	if len(seen) > 20 || !seen["other"] || !seen["A"] || !seen["HTTPS"] {
		t.Errorf("qtype labels %d: %v", len(seen), seen)
	}
	seen = map[string]bool{}
	for rc := range 5000 {
		seen[rcodeLabel(rc)] = true
	}
	if len(seen) > 30 || !seen["other"] || !seen["NXDOMAIN"] {
		t.Errorf("rcode labels %d", len(seen))
	}
	if !strings.HasPrefix(namespace, "dnsfence") {
		t.Error("namespace")
	}
}

// TestRcodeKey: the fast path for the common rcodes gives what miekg's table says, named rcodes
// keep their value and the rest become -1.
func TestRcodeKey(t *testing.T) {
	for rc := -2; rc < 5000; rc++ {
		want := -1
		if _, ok := dns.RcodeToString[rc]; ok {
			want = rc
		}
		if got := rcodeKey(rc); got != want {
			t.Errorf("rcodeKey(%d) = %d, want %d", rc, got, want)
		}
	}
}

func TestNewRejectsDoubleRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, "b"); err == nil {
		t.Error("second New on the same registry succeeded")
	}
}

func TestCacheAndPauseGauges(t *testing.T) {
	m, _ := newTest(t)
	if got := testutil.ToFloat64(m.cacheEntries); got != 0 {
		t.Errorf("cache entries without a cache = %v", got)
	}
	n := 3
	m.CacheSize(func() int { return n })
	n = 5
	if got := testutil.ToFloat64(m.cacheEntries); got != 5 {
		t.Errorf("cache entries = %v, want 5 (read at scrape time)", got)
	}
	m.Paused(true)
	if got := testutil.ToFloat64(m.paused); got != 1 {
		t.Errorf("paused = %v", got)
	}
	m.Paused(false)
	if got := testutil.ToFloat64(m.paused); got != 0 {
		t.Errorf("paused after resume = %v", got)
	}
}

// TestMiddlewareSeriesCacheBounded: unnamed query types and rcodes share the "other" series and
// one cache entry, so odd queries cannot grow the cache.
func TestMiddlewareSeriesCacheBounded(t *testing.T) {
	m, _ := newTest(t)
	r := m.Middleware()(resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		reply := new(dns.Msg).SetReply(req.Msg)
		reply.Rcode = int(req.Question().Qtype) // unnamed rcodes too
		return &resolver.Response{Msg: reply, Outcome: resolver.OutcomeForwarded}, nil
	}))
	for qt := uint16(3000); qt < 3100; qt++ {
		q := new(dns.Msg).SetQuestion("x.", qt)
		if _, err := r.Resolve(context.Background(), &resolver.Request{Msg: q, Received: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(m.queries.WithLabelValues("other", "other", "forwarded", "udp", "default")); got != 100 {
		t.Errorf("queries{other,other} = %v, want 100", got)
	}
	n := 0
	m.defaultGroup.queries.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d cached series, want 1", n)
	}
}

// BenchmarkMiddleware is the metrics stage's cost per blocked query.
func BenchmarkMiddleware(b *testing.B) {
	m, err := New(prometheus.NewRegistry(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	reply := new(dns.Msg)
	resp := &resolver.Response{Msg: reply, Outcome: resolver.OutcomeBlocked, List: "ads", App: "alipay"}
	r := m.Middleware()(resolver.ResolverFunc(func(context.Context, *resolver.Request) (*resolver.Response, error) {
		return resp, nil
	}))
	req := &resolver.Request{Msg: new(dns.Msg).SetQuestion("x.example.", dns.TypeA), Received: time.Now()}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Resolve(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
