package resolver_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/listen"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

func TestHandlerRejectsUnsupported(t *testing.T) {
	ts := resolvertest.Serve(t, resolvertest.Answers(1), listen.Options{})
	noQuestion := new(dns.Msg)
	noQuestion.Id = dns.Id()
	twoQuestions := resolvertest.Query("a.example", dns.TypeA, false)
	twoQuestions.Question = append(twoQuestions.Question, dns.Question{Name: "b.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	notify := resolvertest.Query("a.example", dns.TypeSOA, false)
	notify.Opcode = dns.OpcodeNotify
	update := resolvertest.Query("a.example", dns.TypeSOA, false)
	update.Opcode = dns.OpcodeUpdate
	for _, tc := range []struct {
		name  string
		net   string
		m     *dns.Msg
		rcode int
	}{
		{"no question", "udp", noQuestion, dns.RcodeFormatError},
		{"two questions", "udp", twoQuestions, dns.RcodeFormatError},
		{"notify", "udp", notify, dns.RcodeNotImplemented},
		{"update", "tcp", update, dns.RcodeNotImplemented},
		{"axfr", "tcp", resolvertest.Query("a.example", dns.TypeAXFR, false), dns.RcodeRefused},
		{"ixfr", "udp", resolvertest.Query("a.example", dns.TypeIXFR, false), dns.RcodeRefused},
		{"plain query", "udp", resolvertest.Query("a.example", dns.TypeA, false), dns.RcodeSuccess},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := resolvertest.Exchange(t, tc.net, ts.Addr, tc.m)
			if r.Rcode != tc.rcode || r.Id != tc.m.Id {
				t.Fatalf("rcode %s id %d, want %s id %d", dns.RcodeToString[r.Rcode], r.Id, dns.RcodeToString[tc.rcode], tc.m.Id)
			}
		})
	}
}

func TestHandlerTruncatesToClientBuffer(t *testing.T) {
	ts := resolvertest.Serve(t, resolvertest.Answers(100), listen.Options{}) // ~2 KB of answers
	for _, tc := range []struct {
		name      string
		net       string
		edns      uint16
		truncated bool
		maxSize   int
	}{
		{"udp without EDNS", "udp", 0, true, 512},
		{"udp EDNS 1232", "udp", 1232, true, 1232},
		{"udp EDNS 4096", "udp", 4096, false, 4096},
		{"tcp", "tcp", 0, false, 65535},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := resolvertest.Query("big.example", dns.TypeA, false)
			if tc.edns > 0 {
				q.SetEdns0(tc.edns, false)
			}
			r := resolvertest.Exchange(t, tc.net, ts.Addr, q)
			r.Compress = true // as it was on the wire
			wire, err := r.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if r.Truncated != tc.truncated || len(wire) > tc.maxSize {
				t.Fatalf("TC=%v size=%d answers=%d, want TC=%v size<=%d", r.Truncated, len(wire), len(r.Answer), tc.truncated, tc.maxSize)
			}
			if !tc.truncated && len(r.Answer) != 100 {
				t.Fatalf("%d answers, want all 100", len(r.Answer))
			}
			if (tc.edns > 0) != (r.IsEdns0() != nil) {
				t.Errorf("client EDNS %d but reply OPT %v", tc.edns, r.IsEdns0())
			}
		})
	}
}

// TestHandlerMatchesRequest: whatever a stage returns, the reply carries the client's ID and
// question spelling (0x20), and EDNS only if the client used it, without upstream cookies.
func TestHandlerMatchesRequest(t *testing.T) {
	ts := resolvertest.Serve(t, resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		m := new(dns.Msg)
		m.SetQuestion("lower.example.", dns.TypeA) // a different spelling and ID
		m.Response = true
		m.SetEdns0(4096, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		return &resolver.Response{Msg: m}, nil
	}), listen.Options{})
	q := resolvertest.Query("LoWeR.ExAmPlE", dns.TypeA, false)
	r := resolvertest.Exchange(t, "udp", ts.Addr, q)
	if r.Id != q.Id || r.Question[0].Name != "LoWeR.ExAmPlE." || r.IsEdns0() != nil {
		t.Fatalf("reply %v", r)
	}
	q = resolvertest.Query("LoWeR.ExAmPlE", dns.TypeA, true)
	r = resolvertest.Exchange(t, "udp", ts.Addr, q)
	opt := r.IsEdns0()
	if opt == nil || opt.UDPSize() != resolver.EDNSBufferSize || len(opt.Option) != 0 {
		t.Fatalf("reply OPT %v, want size %d and no options", opt, resolver.EDNSBufferSize)
	}
}

func TestHandlerPanicAnswersServfail(t *testing.T) {
	var calls atomic.Int64
	ts := resolvertest.Serve(t, resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		if calls.Add(1) == 1 {
			panic("stage bug")
		}
		return resolvertest.Answers(1).Resolve(context.Background(), req)
	}), listen.Options{})
	r := resolvertest.Exchange(t, "udp", ts.Addr, resolvertest.Query("p.example", dns.TypeA, false))
	if r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s after panic, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if ts.Panics.Load() != 1 {
		t.Errorf("OnPanic called %d times", ts.Panics.Load())
	}
	r = resolvertest.Exchange(t, "udp", ts.Addr, resolvertest.Query("p.example", dns.TypeA, false))
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("server did not recover: %v", r)
	}
}

func TestHandlerErrorAnswersServfailWithEDE(t *testing.T) {
	ts := resolvertest.Serve(t, resolver.ResolverFunc(func(context.Context, *resolver.Request) (*resolver.Response, error) {
		return nil, fmt.Errorf("%w: all down", resolver.ErrUpstreamsFailed)
	}), listen.Options{})
	r := resolvertest.Exchange(t, "udp", ts.Addr, resolvertest.Query("e.example", dns.TypeA, true))
	if r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	if ede := findEDE(r); ede == nil || ede.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
		t.Fatalf("EDE %v, want No Reachable Authority", ede)
	}
}

func findEDE(m *dns.Msg) *dns.EDNS0_EDE {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

// TestHandlerSurvivesGarbage sends random and malformed packets over UDP and TCP; the server
// must keep answering, must not answer responses, and must count what it could not parse.
func TestHandlerSurvivesGarbage(t *testing.T) {
	ts := resolvertest.Serve(t, resolvertest.Answers(1), listen.Options{})
	uc, err := net.Dial("udp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	valid, _ := resolvertest.Query("g.example", dns.TypeA, false).Pack()
	packets := [][]byte{
		{}, {0}, {1, 2, 3}, valid[:12], valid[:len(valid)-3],
		append(append([]byte{}, valid[:12]...), 0xff, 0xff, 0xff),
	}
	for range 200 {
		b := make([]byte, 1+len(packets)%300)
		_, _ = rand.Read(b)
		packets = append(packets, b)
	}
	for _, p := range packets {
		_, _ = uc.Write(p)
	}
	tc, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tc.Write([]byte{0, 5, 1, 2, 3, 4, 5, 0xff, 0xff})
	tc.Close()

	// A response (QR set) gets no reply: answering would let two servers loop.
	resp := resolvertest.Query("loop.example", dns.TypeA, false)
	resp.Response = true
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	if _, _, err := c.Exchange(resp, ts.Addr); err == nil {
		t.Error("server answered a response packet")
	}

	r := resolvertest.Exchange(t, "udp", ts.Addr, resolvertest.Query("after.example", dns.TypeA, false))
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("after garbage: %v", r)
	}
	if ts.Invalid.Load() == 0 {
		t.Error("no invalid packet was counted")
	}
}

func TestHandlerTCPManyQueriesPerConnectionAndIdleTimeout(t *testing.T) {
	ts := resolvertest.Serve(t, resolvertest.Answers(1), listen.Options{TCPIdleTimeout: 300 * time.Millisecond})
	co, err := dns.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	for i := range 5 {
		q := resolvertest.Query(fmt.Sprintf("q%d.example", i), dns.TypeA, false)
		if err := co.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		_ = co.SetReadDeadline(time.Now().Add(2 * time.Second))
		r, err := co.ReadMsg()
		if err != nil || r.Id != q.Id {
			t.Fatalf("query %d on one connection: %v %v", i, r, err)
		}
	}
	// Idle past the timeout: the server closes the connection.
	_ = co.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = co.ReadMsg()
	var nerr net.Error
	if err == nil || errors.As(err, &nerr) && nerr.Timeout() {
		t.Fatalf("idle connection not closed by the server: %v", err)
	}
}
