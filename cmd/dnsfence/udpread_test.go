package main

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// TestEndToEndReaderHandsOnMisses: the UDP listener's reader answers blocked and cached names
// itself, and the chain tells it (resolver.WillWait, at the cache's miss and the router) before a
// query waits on an upstream, so it hands the socket on first. While one lookup waits on a slow
// upstream, a blocked name, a cached name and another miss are all answered. Without the hand-on
// the reader would wait with the slow lookup, and none of them would be.
func TestEndToEndReaderHandsOnMisses(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	answer := resolvertest.A("192.0.2.53")
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Question[0].Name == "slow.example." {
			entered <- struct{}{}
			<-release
		}
		answer(w, r)
	}))
	defer close(release) // before the upstream stops, should the test fail
	list := writeFile(t, t.TempDir(), "test.txt", testList)
	d := start(t, "-upstream", up.Addr, "-blocklist", list)
	addr := d.dnsAddrs[0]
	resolvertest.Exchange(t, "udp", addr, resolvertest.Query("cached.example", dns.TypeA, false))

	slow := make(chan *dns.Msg, 1)
	go func() {
		c := &dns.Client{Timeout: 10 * time.Second}
		r, _, _ := c.Exchange(resolvertest.Query("slow.example", dns.TypeA, false), addr)
		slow <- r
	}()
	<-entered
	c := &dns.Client{Timeout: 3 * time.Second}
	for _, tc := range []struct {
		name  string
		rcode int
	}{
		{"blocked.example", dns.RcodeNameError},
		{"cached.example", dns.RcodeSuccess},
		{"other.example", dns.RcodeSuccess}, // another miss
	} {
		r, _, err := c.Exchange(resolvertest.Query(tc.name, dns.TypeA, false), addr)
		if err != nil || r.Rcode != tc.rcode {
			t.Fatalf("%s while slow.example waits: %v, %v; want rcode %s", tc.name, r, err, dns.RcodeToString[tc.rcode])
		}
	}
	select {
	case r := <-slow:
		t.Fatalf("slow.example answered before its upstream replied: %v", r)
	default:
	}
	release <- struct{}{} // not closed: the deferred close does that
	if r := <-slow; r == nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("slow.example: %v", r)
	}
}
