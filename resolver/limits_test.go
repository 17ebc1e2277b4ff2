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
)

func TestHandlerInFlightLimit(t *testing.T) {
	entered, release := make(chan struct{}, 10), make(chan struct{})
	var dropped atomic.Int64
	h := &resolver.Handler{
		Resolver: resolvertest.Blocking(entered, release), Timeout: 5 * time.Second,
		InFlight: resolver.NewLimiter(2), OnOverload: func() { dropped.Add(1) },
	}
	s, err := listen.Plain("127.0.0.1:0", h, listen.Options{})
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
