package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"net"
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

func TestForwardReturnsUpstreamAnswer(t *testing.T) {
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 7)}}
		_ = w.WriteMsg(m)
	}))
	f := &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, up.Addr)}}
	resp, err := resolvertest.Resolve(t, f, resolvertest.Query("www.example.org", dns.TypeA, false))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Outcome != resolver.OutcomeForwarded || resp.Upstream != "udp://"+up.Addr {
		t.Errorf("outcome %v upstream %q", resp.Outcome, resp.Upstream)
	}
	if len(resp.Msg.Answer) != 1 || resp.Msg.Answer[0].(*dns.A).A.String() != "192.0.2.7" {
		t.Fatalf("answer = %v", resp.Msg.Answer)
	}
	if resp.Msg.Authoritative {
		t.Error("a forwarded answer claims to be authoritative")
	}
}

// TestForwardQuery checks what the upstream receives: a fresh ID each time, the question, RD/CD,
// and EDNS only when the client sent it, clamped to 1232 with DO kept.
func TestForwardQuery(t *testing.T) {
	var mu sync.Mutex
	var seen []*dns.Msg
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		seen = append(seen, r.Copy())
		mu.Unlock()
		resolvertest.A("192.0.2.1").ServeDNS(w, r)
	}))
	f := &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, up.Addr)}}

	withEDNS := resolvertest.Query("a.example.", dns.TypeA, false)
	withEDNS.SetEdns0(4096, true)
	withEDNS.CheckingDisabled = true
	withEDNS.Id = 4242
	plain := resolvertest.Query("b.example.", dns.TypeAAAA, false)
	plain.Id = 4242
	noDO := resolvertest.Query("c.example.", dns.TypeA, false)
	noDO.SetEdns0(512, false)
	// Forward reuses its query messages: each must leave nothing behind for the next.
	for _, q := range []*dns.Msg{withEDNS, plain, withEDNS, noDO} {
		if _, err := resolvertest.Resolve(t, f, q); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 4 {
		t.Fatalf("upstream saw %d queries", len(seen))
	}
	if seen[0].Id == 4242 && seen[1].Id == 4242 && seen[2].Id == 4242 || seen[0].Id == seen[2].Id {
		t.Errorf("upstream IDs %d %d %d: want fresh random IDs, not the client's", seen[0].Id, seen[1].Id, seen[2].Id)
	}
	for _, i := range []int{0, 2} {
		opt := seen[i].IsEdns0()
		if opt == nil || opt.UDPSize() != 1232 || !opt.Do() || !seen[i].CheckingDisabled || !seen[i].RecursionDesired || len(seen[i].Extra) != 1 {
			t.Errorf("EDNS query %d reached upstream as %v", i, seen[i])
		}
	}
	if opt := seen[3].IsEdns0(); opt == nil || opt.UDPSize() != 512 || opt.Do() || seen[3].CheckingDisabled || len(seen[3].Extra) != 1 {
		t.Errorf("EDNS query without DO reached upstream as %v", seen[3])
	}
	if seen[1].IsEdns0() != nil || seen[1].Question[0].Qtype != dns.TypeAAAA || seen[1].Question[0].Name != "b.example." {
		t.Errorf("plain query reached upstream as %v", seen[1])
	}
	if withEDNS.Id != 4242 || withEDNS.IsEdns0().UDPSize() != 4096 {
		t.Error("Forward modified the client's message")
	}
}

// TestForwardTruncatedRetriesTCP: an answer truncated over UDP is fetched again over TCP.
func TestForwardTruncatedRetriesTCP(t *testing.T) {
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if w.RemoteAddr().Network() == "udp" {
			m.Truncated = true
		} else {
			m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{"via tcp"}}}
		}
		_ = w.WriteMsg(m)
	}))
	f := &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, "udp://"+up.Addr)}}
	resp, err := resolvertest.Resolve(t, f, resolvertest.Query("big.example", dns.TypeTXT, false))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.Truncated || len(resp.Msg.Answer) != 1 || resp.Msg.Answer[0].(*dns.TXT).Txt[0] != "via tcp" {
		t.Fatalf("got %v", resp.Msg)
	}
	if up.Queries() != 2 {
		t.Errorf("upstream saw %d queries, want 2 (udp then tcp)", up.Queries())
	}
}

func TestForwardTCPOnly(t *testing.T) {
	var nets sync.Map
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		nets.Store(w.RemoteAddr().Network(), true)
		resolvertest.A("192.0.2.2").ServeDNS(w, r)
	}))
	f := &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, "tcp://"+up.Addr)}}
	if _, err := resolvertest.Resolve(t, f, resolvertest.Query("x.example", dns.TypeA, false)); err != nil {
		t.Fatal(err)
	}
	if _, udp := nets.Load("udp"); udp {
		t.Error("tcp:// upstream was queried over UDP")
	}
	if _, tcp := nets.Load("tcp"); !tcp {
		t.Error("tcp:// upstream was not queried over TCP")
	}
}

// TestForwardFailover: the next upstream is tried on timeout, SERVFAIL, REFUSED and a refused
// connection, and each failure is reported to Observe with its reason.
func TestForwardFailover(t *testing.T) {
	good := resolvertest.Start(t, resolvertest.A("192.0.2.9"))
	dead := resolvertest.Start(t, resolvertest.Silent())
	servfail := resolvertest.Start(t, resolvertest.Rcode(dns.RcodeServerFailure))
	refused := resolvertest.Start(t, resolvertest.Rcode(dns.RcodeRefused))
	closed := resolvertest.FreeTCPAddr(t)

	for _, tc := range []struct {
		name, first, reason string
	}{
		{"timeout", dead.Addr, "timeout"},
		{"servfail", servfail.Addr, "servfail"},
		{"refused", refused.Addr, "refused"},
		{"connection refused", "tcp://" + closed, "network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reasons []string
			f := &upstream.Forward{
				Upstreams:      []upstream.Upstream{resolvertest.Upstream(t, tc.first), resolvertest.Upstream(t, good.Addr)},
				AttemptTimeout: 300 * time.Millisecond,
				Observe: func(_ string, _ time.Duration, err error) {
					reasons = append(reasons, upstream.ErrorReason(err))
				},
			}
			resp, err := resolvertest.Resolve(t, f, resolvertest.Query("fo.example", dns.TypeA, false))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Upstream != "udp://"+good.Addr {
				t.Errorf("answered by %q", resp.Upstream)
			}
			if len(reasons) != 2 || reasons[0] != tc.reason || reasons[1] != "" {
				t.Errorf("observed reasons %q, want [%q \"\"]", reasons, tc.reason)
			}
		})
	}
}

func TestForwardAllFail(t *testing.T) {
	dead := resolvertest.Start(t, resolvertest.Silent())
	servfail := resolvertest.Start(t, resolvertest.Rcode(dns.RcodeServerFailure))
	f := &upstream.Forward{
		Upstreams:      []upstream.Upstream{resolvertest.Upstream(t, dead.Addr), resolvertest.Upstream(t, servfail.Addr)},
		AttemptTimeout: 200 * time.Millisecond,
	}
	_, err := resolvertest.Resolve(t, f, resolvertest.Query("x.example", dns.TypeA, false))
	if !errors.Is(err, resolver.ErrUpstreamsFailed) || !errors.Is(err, resolver.ErrUpstreamRcode) {
		t.Fatalf("err = %v, want ErrUpstreamsFailed wrapping the SERVFAIL", err)
	}
}

// TestForwardOverallDeadline: the request context bounds the whole failover, not each attempt.
func TestForwardOverallDeadline(t *testing.T) {
	var ups []upstream.Upstream
	for range 5 {
		ups = append(ups, resolvertest.Upstream(t, resolvertest.Start(t, resolvertest.Silent()).Addr))
	}
	f := &upstream.Forward{Upstreams: ups, AttemptTimeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := f.Resolve(ctx, &resolver.Request{Msg: resolvertest.Query("x.example", dns.TypeA, false)})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, resolver.ErrUpstreamsFailed) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(3 * time.Second): // 5 attempts of 1s each would take 5s
		t.Fatal("failover ignored the request deadline")
	}
}

// TestForwardCancelWithoutDeadline: a context with no deadline of its own (a background fetch at
// shutdown) still stops a plain upstream's exchange when it is cancelled, long before the attempt
// timeout; only contexts with a deadline rely on the socket's deadline alone.
func TestForwardCancelWithoutDeadline(t *testing.T) {
	dead := resolvertest.Start(t, resolvertest.Silent())
	for _, url := range []string{"udp://" + dead.Addr, "tcp://" + dead.Addr} {
		t.Run(url[:3], func(t *testing.T) {
			f := &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, url)}, AttemptTimeout: time.Minute}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := f.Resolve(ctx, &resolver.Request{Msg: resolvertest.Query("x.example", dns.TypeA, false)})
				done <- err
			}()
			time.AfterFunc(100*time.Millisecond, cancel)
			select {
			case err := <-done:
				if !errors.Is(err, resolver.ErrUpstreamsFailed) {
					t.Fatalf("err = %v", err)
				}
			case <-time.After(10 * time.Second): // the attempt timeout is a minute
				t.Fatal("cancelling the context did not stop the exchange")
			}
		})
	}
}

// TestForwardIgnoresMismatchedReplies: a reply for another question (or with another ID) is not
// used; the real reply that follows is.
func TestForwardIgnoresMismatchedReplies(t *testing.T) {
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		forged := new(dns.Msg)
		forged.SetReply(r)
		forged.Question[0].Name = "evil.example."
		forged.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "evil.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(6, 6, 6, 6)}}
		_ = w.WriteMsg(forged)
		wrongID := forged.Copy()
		wrongID.Id = r.Id + 1
		wrongID.Question[0].Name = r.Question[0].Name
		_ = w.WriteMsg(wrongID)
		resolvertest.A("192.0.2.3").ServeDNS(w, r)
	}))
	f := &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, up.Addr)}}
	resp, err := resolvertest.Resolve(t, f, resolvertest.Query("good.example", dns.TypeA, false))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Msg.Answer[0].(*dns.A).A.String(); got != "192.0.2.3" {
		t.Fatalf("answer %s: a mismatched reply was used", got)
	}
}

func TestForwardOnlyMismatchedRepliesFails(t *testing.T) {
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Question[0].Qtype = dns.TypeMX
		_ = w.WriteMsg(m)
	}))
	good := resolvertest.Start(t, resolvertest.A("192.0.2.4"))
	var reasons []string
	f := &upstream.Forward{
		Upstreams:      []upstream.Upstream{resolvertest.Upstream(t, "tcp://"+up.Addr), resolvertest.Upstream(t, good.Addr)},
		AttemptTimeout: 300 * time.Millisecond,
		Observe:        func(_ string, _ time.Duration, err error) { reasons = append(reasons, upstream.ErrorReason(err)) },
	}
	resp, err := resolvertest.Resolve(t, f, resolvertest.Query("q.example", dns.TypeA, false))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Upstream != "udp://"+good.Addr || len(reasons) != 2 || reasons[0] != "mismatch" {
		t.Fatalf("upstream %q reasons %q", resp.Upstream, reasons)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "192.0.2.1", want: "udp://192.0.2.1:53"},
		{in: "192.0.2.1:5353", want: "udp://192.0.2.1:5353"},
		{in: "udp://192.0.2.1", want: "udp://192.0.2.1:53"},
		{in: "tcp://192.0.2.1:54", want: "tcp://192.0.2.1:54"},
		{in: "2001:db8::1", want: "udp://[2001:db8::1]:53"},
		{in: "[2001:db8::1]:5300", want: "udp://[2001:db8::1]:5300"},
		{in: "tcp://[::1]", want: "tcp://[::1]:53"},
		{in: "tls://192.0.2.1", want: "tls://192.0.2.1:853"},
		{in: "tls://9.9.9.9:8853?tls_server_name=dns.quad9.net", want: "tls://9.9.9.9:8853"},
		{in: "https://192.0.2.1/dns-query", want: "https://192.0.2.1/dns-query"},
		{in: "https://192.0.2.1", want: "https://192.0.2.1/dns-query"},
		{in: "https://dns.example/dns-query", err: "needs bootstrap"},
		{in: "quic://192.0.2.1", err: "unsupported scheme"},
		{in: "dns.example.com", err: "not an IP address"},
		{in: "192.0.2.1:0", err: "bad port"},
		{in: "192.0.2.1:99999", err: "bad port"},
	} {
		u, err := upstream.Parse(tc.in, upstream.Options{})
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) err = %v, want %q", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("Parse(%q): %v", tc.in, err)
		case u.Address() != tc.want:
			t.Errorf("Parse(%q) = %q, want %q", tc.in, u.Address(), tc.want)
		}
	}
}

// TestForwardHealth: an upstream that keeps failing is taken out of rotation (not even tried),
// probed again after its cooldown, and back in rotation once it answers.
func TestForwardHealth(t *testing.T) {
	var dead atomic.Bool
	dead.Store(true)
	flappy := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if !dead.Load() {
			resolvertest.A("192.0.2.1").ServeDNS(w, r)
		}
	}))
	good := resolvertest.Start(t, resolvertest.A("192.0.2.2"))
	var mu sync.Mutex
	var events []string
	f := &upstream.Forward{
		Upstreams:      []upstream.Upstream{resolvertest.Upstream(t, flappy.Addr), resolvertest.Upstream(t, good.Addr)},
		AttemptTimeout: 200 * time.Millisecond,
		Health:         &upstream.HealthPolicy{FailThreshold: 2, Cooldown: 400 * time.Millisecond, MaxCooldown: time.Second},
		OnHealth: func(_ string, healthy bool) {
			mu.Lock()
			events = append(events, fmt.Sprint(healthy))
			mu.Unlock()
		},
	}
	ask := func() string {
		resp, err := resolvertest.Resolve(t, f, resolvertest.Query("h.example", dns.TypeA, false))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Upstream
	}
	ask()
	ask() // second consecutive failure: out of rotation
	tried := flappy.Queries()
	if got := ask(); got != "udp://"+good.Addr || flappy.Queries() != tried {
		t.Fatalf("a failing upstream was still tried (%d -> %d queries)", tried, flappy.Queries())
	}
	dead.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for ask() != "udp://"+flappy.Addr { // probed once the cooldown is over, then back first in line
		if time.Now().After(deadline) {
			t.Fatal("recovered upstream never probed back into rotation")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(events) != "[false true]" {
		t.Errorf("health events %v, want [false true]", events)
	}
}

// TestForwardAllDownTriesOne: with every upstream out of rotation, one is still tried (the client
// gets an answer the moment any upstream can give one), not all of them.
func TestForwardAllDownTriesOne(t *testing.T) {
	a, b := resolvertest.Start(t, resolvertest.Silent()), resolvertest.Start(t, resolvertest.Silent())
	f := &upstream.Forward{
		Upstreams:      []upstream.Upstream{resolvertest.Upstream(t, a.Addr), resolvertest.Upstream(t, b.Addr)},
		AttemptTimeout: 100 * time.Millisecond,
		Health:         &upstream.HealthPolicy{FailThreshold: 1, Cooldown: time.Hour},
	}
	if _, err := resolvertest.Resolve(t, f, resolvertest.Query("x.example", dns.TypeA, false)); !errors.Is(err, resolver.ErrUpstreamsFailed) {
		t.Fatal(err)
	}
	before := a.Queries() + b.Queries()
	if _, err := resolvertest.Resolve(t, f, resolvertest.Query("x.example", dns.TypeA, false)); !errors.Is(err, resolver.ErrUpstreamsFailed) {
		t.Fatal(err)
	}
	if n := a.Queries() + b.Queries() - before; n != 1 {
		t.Errorf("%d upstreams tried while all were down, want 1", n)
	}
}

// garbageUpstream answers every UDP packet with junk: random bytes, a header-only packet, and a
// reply with the right ID but a body that does not parse.
func garbageUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			id := buf[:2]
			_, _ = pc.WriteTo([]byte("\x13\x37 this is not DNS at all"), from)
			_, _ = pc.WriteTo(append(append([]byte{}, id...), 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0), from)
			_, _ = pc.WriteTo(append(append([]byte{}, id...), 0x81, 0x80, 0, 1, 0, 9, 0, 0, 0, 0, 0xff, 0xff, 0xff), from)
		}
	}()
	return pc.LocalAddr().String()
}

func TestForwardGarbageUpstream(t *testing.T) {
	good := resolvertest.Start(t, resolvertest.A("192.0.2.5"))
	var reasons []string
	f := &upstream.Forward{
		Upstreams:      []upstream.Upstream{resolvertest.Upstream(t, garbageUpstream(t)), resolvertest.Upstream(t, good.Addr)},
		AttemptTimeout: 300 * time.Millisecond,
		Observe:        func(_ string, _ time.Duration, err error) { reasons = append(reasons, upstream.ErrorReason(err)) },
	}
	resp, err := resolvertest.Resolve(t, f, resolvertest.Query("g.example", dns.TypeA, false))
	if err != nil || resp.Upstream != "udp://"+good.Addr {
		t.Fatalf("garbage upstream not failed over: %+v %v", resp, err)
	}
	if len(reasons) != 2 || reasons[0] != "timeout" {
		t.Errorf("reasons %v: garbage must be ignored until the attempt times out", reasons)
	}
}
