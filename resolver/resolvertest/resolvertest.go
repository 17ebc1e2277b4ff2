// Package resolvertest starts real DNS servers on loopback for tests: in-process miekg/dns servers on
// 127.0.0.1 with a random port, each with its own handler (never dns.DefaultServeMux).
package resolvertest

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/listen"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

// Server is a UDP+TCP DNS server on one loopback port.
type Server struct {
	// Addr is "127.0.0.1:port", the same port for UDP and TCP.
	Addr    string
	queries atomic.Int64
}

// Queries returns how many queries the server has received over either transport.
func (s *Server) Queries() int64 { return s.queries.Load() }

// Start serves h over UDP and TCP on 127.0.0.1 and a random port until the test ends. It uses
// the same listener code as dnsfence itself (listen.Plain).
func Start(tb testing.TB, h dns.Handler) *Server {
	tb.Helper()
	s := &Server{}
	counting := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		s.queries.Add(1)
		h.ServeDNS(w, r)
	})
	srv, err := listen.Plain("127.0.0.1:0", counting, listen.Options{})
	if err != nil {
		tb.Fatalf("resolvertest: %v", err)
	}
	tb.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	s.Addr = srv.Addr()
	return s
}

// Reply returns a handler that answers every query with the records returned by rrs for its
// question (an empty slice is NODATA).
func Reply(rrs func(q dns.Question) []dns.RR) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 {
			m.Answer = rrs(r.Question[0])
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), opt.Do())
		}
		_ = w.WriteMsg(m)
	}
}

// A returns a handler answering A queries for any name with ip (TTL 300) and NODATA otherwise.
func A(ip string) dns.HandlerFunc {
	return Reply(func(q dns.Question) []dns.RR {
		if q.Qtype != dns.TypeA {
			return nil
		}
		return []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A:   net.ParseIP(ip),
		}}
	})
}

// Rcode returns a handler answering every query with rcode.
func Rcode(rcode int) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		_ = w.WriteMsg(m)
	}
}

// Silent returns a handler that never answers (a dead upstream that still accepts packets).
func Silent() dns.HandlerFunc {
	return func(dns.ResponseWriter, *dns.Msg) {}
}

// Exchange sends m to addr over network ("udp" or "tcp") with a 2s timeout and fails the test on error.
func Exchange(tb testing.TB, network, addr string, m *dns.Msg) *dns.Msg {
	tb.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		tb.Fatalf("exchange %s %s %s: %v", network, addr, m.Question[0].Name, err)
	}
	return r
}

// Query builds a recursive query for name and type, with EDNS (size 1232) when edns is true.
func Query(name string, qtype uint16, edns bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	return m
}

// Upstream parses url as an upstream (udp://, tcp://, tls://, https://, or a bare IP:port) or
// fails the test.
func Upstream(tb testing.TB, url string) upstream.Upstream {
	tb.Helper()
	u, err := upstream.Parse(url, upstream.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// Answers returns a terminal stage that answers every question with n A records (each ~16 bytes
// on the wire), for tests of sizes and truncation.
func Answers(n int) resolver.Resolver {
	return resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		q := req.Question()
		for i := range n {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.IPv4(10, 0, byte(i/256), byte(i)),
			})
		}
		return &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded}, nil
	})
}

// Served is a dnsfence Handler serving a chain on a loopback listener, with counters a test
// checks.
type Served struct {
	// Addr is "127.0.0.1:port", the same port for UDP and TCP.
	Addr    string
	Panics  atomic.Int64 // the Handler's OnPanic calls
	Invalid atomic.Int64 // packets the listener could not parse
}

// Serve starts a real server on 127.0.0.1:0 whose chain is resolver.Validate then final, with the
// same Handler and listener code as dnsfence, until the test ends.
func Serve(tb testing.TB, final resolver.Resolver, opts listen.Options) *Served {
	tb.Helper()
	ts := &Served{}
	h := &resolver.Handler{
		Resolver: resolver.Chain(final, resolver.Validate()),
		Timeout:  2 * time.Second,
		OnPanic:  func() { ts.Panics.Add(1) },
	}
	opts.OnInvalid = func([]byte, error) { ts.Invalid.Add(1) }
	s, err := listen.Plain("127.0.0.1:0", h, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	ts.Addr = s.Addr()
	return ts
}

// Blocking is a terminal stage that signals entered for every query and holds it until release
// is closed, then answers it.
func Blocking(entered chan<- struct{}, release <-chan struct{}) resolver.Resolver {
	return resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
		resolver.WillWait(ctx) // as a stage that waits must (a blocking UDP reader hands on its socket)
		entered <- struct{}{}
		<-release
		return Answers(1).Resolve(ctx, req)
	})
}

// Resolve runs q through r with a 5-second deadline, as the Handler would.
func Resolve(tb testing.TB, r resolver.Resolver, q *dns.Msg) (*resolver.Response, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.Resolve(ctx, &resolver.Request{Msg: q, Received: time.Now()})
}

// FreeTCPAddr returns a loopback TCP address that was free a moment ago: nothing listens on it,
// so a connection to it is refused (until something else takes the port).
func FreeTCPAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
