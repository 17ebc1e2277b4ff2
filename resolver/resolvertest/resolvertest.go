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
// the same listener code as dnsfence itself (resolver.Listen).
func Start(tb testing.TB, h dns.Handler) *Server {
	tb.Helper()
	s := &Server{}
	counting := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		s.queries.Add(1)
		h.ServeDNS(w, r)
	})
	srv, err := resolver.Listen("127.0.0.1:0", counting, resolver.ServerOptions{})
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
