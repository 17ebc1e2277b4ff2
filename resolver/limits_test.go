package resolver_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// blocking is a final stage that holds every query until release is closed.
func blocking(entered chan<- struct{}, release <-chan struct{}) resolver.Resolver {
	return resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
		entered <- struct{}{}
		<-release
		return bigAnswer(1).Resolve(ctx, req)
	})
}

func TestHandlerInFlightLimit(t *testing.T) {
	entered, release := make(chan struct{}, 10), make(chan struct{})
	var dropped atomic.Int64
	h := &resolver.Handler{
		Resolver: blocking(entered, release), Timeout: 5 * time.Second,
		InFlight: resolver.NewLimiter(2), OnOverload: func() { dropped.Add(1) },
	}
	s, err := resolver.Listen("127.0.0.1:0", h, resolver.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })

	answers := make(chan *dns.Msg, 2)
	for range 2 {
		go func() {
			c := &dns.Client{Timeout: 5 * time.Second}
			r, _, _ := c.Exchange(resolvertest.Query("held.example", dns.TypeA, false), s.Addr())
			answers <- r
		}()
		<-entered // both slots are now taken
	}
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	if r, _, err := c.Exchange(resolvertest.Query("third.example", dns.TypeA, false), s.Addr()); err == nil {
		t.Fatalf("third query answered past the in-flight limit: %v", r)
	}
	if dropped.Load() != 1 {
		t.Errorf("dropped %d, want 1", dropped.Load())
	}
	close(release)
	for range 2 {
		if r := <-answers; r == nil || r.Rcode != dns.RcodeSuccess {
			t.Errorf("held query: %v", r)
		}
	}
	// Capacity is back.
	if r := resolvertest.Exchange(t, "udp", s.Addr(), resolvertest.Query("after.example", dns.TypeA, false)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after release: %v", r)
	}
}

func TestServerMaxTCPConns(t *testing.T) {
	ts := serve(t, bigAnswer(1), resolver.ServerOptions{MaxTCPConns: 1})
	first, err := dns.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	q := resolvertest.Query("a.example", dns.TypeA, false)
	if err := first.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	if _, err := first.ReadMsg(); err != nil {
		t.Fatal(err)
	}
	second, err := dns.Dial("tcp", ts.addr) // the kernel accepts; dnsfence does not yet
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	_ = second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if r, err := second.ReadMsg(); err == nil {
		t.Fatalf("second connection served past the limit: %v", r)
	}
	first.Close()
	_ = second.SetReadDeadline(time.Now().Add(3 * time.Second))
	if r, err := second.ReadMsg(); err != nil || r.Id != q.Id {
		t.Fatalf("second connection not served once the first closed: %v %v", r, err)
	}
}

func TestServerMaxTCPQueries(t *testing.T) {
	ts := serve(t, bigAnswer(1), resolver.ServerOptions{MaxTCPQueries: 3})
	co, err := dns.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	for i := range 4 {
		q := resolvertest.Query("q.example", dns.TypeA, false)
		_ = co.WriteMsg(q)
		_ = co.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := co.ReadMsg()
		if i < 3 && err != nil {
			t.Fatalf("query %d: %v", i+1, err)
		}
		if i == 3 && err == nil {
			t.Fatal("a 4th query was answered on a connection limited to 3")
		}
	}
}

func TestForwardSkipsBusyUpstream(t *testing.T) {
	release := make(chan struct{})
	slow := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		<-release
		resolvertest.A("192.0.2.1").ServeDNS(w, r)
	}))
	t.Cleanup(func() { close(release) })
	fast := resolvertest.Start(t, resolvertest.A("192.0.2.2"))
	var reasons atomic.Value
	f := &resolver.Forward{
		Upstreams:      []resolver.Upstream{mustUpstream(t, slow.Addr), mustUpstream(t, fast.Addr)},
		AttemptTimeout: 3 * time.Second,
		Limits:         []*resolver.Limiter{resolver.NewLimiter(1), nil},
		Observe: func(_ string, _ time.Duration, err error) {
			if resolver.ErrorReason(err) == "busy" {
				reasons.Store("busy")
			}
		},
	}
	go func() { _, _ = forward(t, f, resolvertest.Query("hold.example", dns.TypeA, false)) }()
	for slow.Queries() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := forward(t, f, resolvertest.Query("next.example", dns.TypeA, false))
	if err != nil || resp.Upstream != "udp://"+fast.Addr {
		t.Fatalf("second query: %+v %v", resp, err)
	}
	if reasons.Load() != "busy" {
		t.Errorf("busy upstream was not skipped (reason %v)", reasons.Load())
	}
}
