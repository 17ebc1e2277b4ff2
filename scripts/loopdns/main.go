// Command loopdns is a minimal authoritative stand-in for the soak and smoke scripts: it answers
// every A query with 192.0.2.1 and AAAA with 2001:db8::1 (TTL 60) over UDP and TCP on a loopback
// address. It exists so the scripts need no real upstream; never point it at anything else.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/miekg/dns"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:15301", "loopback `address` to serve on")
	flag.Parse()
	if ip := net.ParseIP(mustHost(*listen)); ip == nil || !ip.IsLoopback() {
		fmt.Fprintln(os.Stderr, "loopdns: -listen must be a loopback address")
		os.Exit(2)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		if len(r.Question) == 1 {
			q := r.Question[0]
			hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 60}
			switch q.Qtype {
			case dns.TypeA:
				m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 1)}}
			case dns.TypeAAAA:
				m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::1")}}
			}
		}
		_ = w.WriteMsg(m)
	})
	errc := make(chan error, 2)
	for _, n := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: *listen, Net: n, Handler: h}
		go func() { errc <- srv.ListenAndServe() }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "loopdns:", err)
		os.Exit(1)
	case <-sig:
	}
}

func mustHost(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return ""
	}
	return h
}
