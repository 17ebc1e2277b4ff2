package resolver

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func answerAll() Resolver {
	return ResolverFunc(func(_ context.Context, req *Request) (*Response, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		return &Response{Msg: m, Outcome: OutcomeForwarded}, nil
	})
}

func query(client string, t Transport) *Request {
	m := new(dns.Msg)
	m.SetQuestion("x.example.", dns.TypeA)
	return &Request{Msg: m, Client: netip.MustParseAddr(client), Transport: t}
}

func TestRateLimitTokenBucket(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := Chain(answerAll(), RateLimiter(RateLimit{ClientQPS: 10, ClientBurst: 5}, clk.now))
	outcomes := func(client string, n int, tr Transport) (passed, limited, tc, dropped int) {
		for range n {
			resp, _ := r.Resolve(context.Background(), query(client, tr))
			switch {
			case resp.Outcome != OutcomeRateLimited:
				passed++
			case resp.Drop:
				limited++
				dropped++
			default:
				limited++
				if resp.Msg.Truncated {
					tc++
				}
			}
		}
		return
	}
	if p, l, _, _ := outcomes("192.0.2.1", 8, UDP); p != 5 || l != 3 {
		t.Fatalf("burst: %d passed %d limited, want 5 and 3", p, l)
	}
	if p, _, _, _ := outcomes("192.0.2.2", 5, UDP); p != 5 {
		t.Errorf("another client shares the first one's bucket: %d passed", p)
	}
	if p, _, _, _ := outcomes("192.0.2.1", 5, TCP); p != 5 {
		t.Errorf("TCP was limited: %d passed", p)
	}
	clk.t = clk.t.Add(200 * time.Millisecond) // refills 2 tokens at 10 qps
	if p, l, _, _ := outcomes("192.0.2.1", 3, UDP); p != 2 || l != 1 {
		t.Errorf("after 200ms: %d passed %d limited, want 2 and 1", p, l)
	}
}

func TestRateLimitPrefixAndSlip(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := Chain(answerAll(), RateLimiter(RateLimit{PrefixQPS: 1, PrefixBurst: 4, Slip: 2}, clk.now))
	passed, tc, dropped := 0, 0, 0
	for i := range 10 { // ten addresses of one /24: one shared bucket
		resp, _ := r.Resolve(context.Background(), query(fmt.Sprintf("198.51.100.%d", i), UDP))
		switch {
		case resp.Outcome != OutcomeRateLimited:
			passed++
		case resp.Drop:
			dropped++
		case resp.Msg.Truncated && len(resp.Msg.Answer) == 0:
			tc++
		}
	}
	if passed != 4 || tc != 3 || dropped != 3 {
		t.Errorf("passed %d, slipped %d, dropped %d; want 4, 3, 3", passed, tc, dropped)
	}
	// IPv6: a /56 is one bucket, the next /56 another.
	if resp, _ := r.Resolve(context.Background(), query("2001:db8:0:100::1", UDP)); resp.Outcome == OutcomeRateLimited {
		t.Error("a fresh /56 was limited")
	}
}

// TestRateLimitBoundedMemory: a spoofed flood from many addresses cannot grow the table past
// MaxEntries (plus one per shard).
func TestRateLimitBoundedMemory(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	rl := newRateLimiter(RateLimit{ClientQPS: 1, ClientBurst: 1, MaxEntries: 1280}, clk.now)
	for i := range 50000 {
		rl.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	total := 0
	for i := range rl.shards {
		total += len(rl.shards[i].buckets)
	}
	if total > 1280+rateShards {
		t.Errorf("%d buckets tracked, bound is %d", total, 1280+rateShards)
	}
}
