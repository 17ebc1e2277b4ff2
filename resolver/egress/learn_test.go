package egress

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
)

// fakeUpstream answers A and AAAA questions from a table.
func fakeUpstream(answers map[string][]string) resolver.Resolver {
	return resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		q := req.Question()
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		for _, s := range answers[q.Name] {
			a := netip.MustParseAddr(s)
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 30}
			switch {
			case a.Is4() && q.Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IP(a.AsSlice())})
			case a.Is6() && q.Qtype == dns.TypeAAAA:
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.IP(a.AsSlice())})
			}
		}
		return &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded}, nil
	})
}

type sink struct {
	mu   sync.Mutex
	got  []netip.Addr
	ttls []time.Duration
	apps []string
	ch   chan struct{}
}

func (s *sink) learn(app string, addrs []netip.Addr, ttl time.Duration) bool {
	s.mu.Lock()
	s.apps = append(s.apps, app)
	s.got = append(s.got, addrs...)
	s.ttls = append(s.ttls, ttl)
	s.mu.Unlock()
	s.ch <- struct{}{}
	return true
}

func TestLearnerLearnsBlockedAndSkipsShared(t *testing.T) {
	up := fakeUpstream(map[string][]string{
		"bad.example.":    {"192.0.2.10", "192.0.2.20", "2001:db8::10"},
		"shared.example.": {"192.0.2.20"},
	})
	s := &sink{ch: make(chan struct{}, 8)}
	var skipped int
	l := NewLearner(LearnOptions{Upstream: up, Sink: s.learn, MinTTL: time.Minute, MaxTTL: time.Hour,
		OnSkipped: func(n int) { skipped += n }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)
	// The chain below the learner: blocks bad.example, forwards the rest.
	below := resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
		if req.Question().Name == "bad.example." {
			m := new(dns.Msg)
			m.SetRcode(req.Msg, dns.RcodeNameError)
			return &resolver.Response{Msg: m, Outcome: resolver.OutcomeBlocked, List: "qq", App: "qq"}, nil
		}
		return up.Resolve(ctx, req)
	})
	chain := l.Middleware()(below)
	ask := func(name string, qt uint16) {
		m := new(dns.Msg)
		m.SetQuestion(name, qt)
		if _, err := chain.Resolve(ctx, &resolver.Request{Msg: m, Client: netip.MustParseAddr("198.51.100.2"), Received: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	ask("shared.example.", dns.TypeA) // 192.0.2.20 now served for a name that is not blocked
	ask("bad.example.", dns.TypeA)
	ask("bad.example.", dns.TypeA) // deduplicated
	for range 2 {                  // one batch for A, one for AAAA
		select {
		case <-s.ch:
		case <-time.After(5 * time.Second):
			t.Fatal("nothing learned")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.SortFunc(s.got, netip.Addr.Compare)
	want := []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")}
	if !slices.Equal(s.got, want) {
		t.Errorf("learned %v, want %v", s.got, want)
	}
	if !slices.Equal(s.apps, []string{"qq", "qq"}) {
		t.Errorf("learned for apps %q, want the blocked name's app qq", s.apps)
	}
	for _, ttl := range s.ttls {
		if ttl != time.Minute {
			t.Errorf("ttl %v, want the 30s answer TTL clamped to 1m", ttl)
		}
	}
	if skipped != 1 {
		t.Errorf("skipped = %d, want 1 (the shared address)", skipped)
	}
	select {
	case <-s.ch:
		t.Error("a repeated blocked query was resolved again")
	case <-time.After(100 * time.Millisecond):
	}
}

func BenchmarkLearnerServed(b *testing.B) {
	l := NewLearner(LearnOptions{Sink: func(string, []netip.Addr, time.Duration) bool { return true }})
	m := new(dns.Msg)
	m.SetQuestion("a.example.", dns.TypeA)
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "a.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
	resp := &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded}
	chain := l.Middleware()(resolver.ResolverFunc(func(context.Context, *resolver.Request) (*resolver.Response, error) { return resp, nil }))
	req := &resolver.Request{Msg: m, Received: time.Now()}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = chain.Resolve(ctx, req)
		}
	})
}
