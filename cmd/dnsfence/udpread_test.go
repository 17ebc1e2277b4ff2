package main

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/listen"
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

// TestUDPReadModes: with limits.udp_blocking_reads (the default) GOMAXPROCS grows by one per UDP
// socket while dnsfence runs (the readers hold a P each) and is back afterwards; with it false,
// the sockets are read through Go's poller and GOMAXPROCS is left alone. Both answer.
func TestUDPReadModes(t *testing.T) {
	if !listen.BlockingReadsSupported {
		t.Skip("blocking reads need Linux")
	}
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	for _, tc := range []struct {
		setting string
		extra   int
	}{
		{"", min(runtime.NumCPU(), runtime.GOMAXPROCS(0))}, // one socket per CPU in use, one address
		{"limits: {udp_blocking_reads: false}\n", 0},
	} {
		t.Run(fmt.Sprintf("extra Ps %d", tc.extra), func(t *testing.T) {
			before := runtime.GOMAXPROCS(0)
			cfg := writeFile(t, t.TempDir(), "dnsfence.yaml", "listen: [127.0.0.1:0]\nupstreams: ["+up.Addr+"]\n"+tc.setting)
			d := start(t, "-config", cfg)
			if got := runtime.GOMAXPROCS(0); got != before+tc.extra {
				t.Errorf("GOMAXPROCS %d while serving, want %d+%d", got, before, tc.extra)
			}
			for _, q := range []struct {
				name  string
				rcode int
			}{{"mobilegw.alipay.com", dns.RcodeNameError}, {"www.example", dns.RcodeSuccess}} {
				if r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(q.name, dns.TypeA, false)); r.Rcode != q.rcode {
					t.Errorf("%s: %v", q.name, r)
				}
			}
			if err := d.stop(); err != nil {
				t.Fatal(err)
			}
			if got := runtime.GOMAXPROCS(0); got != before {
				t.Errorf("GOMAXPROCS %d after stopping, want %d", got, before)
			}
		})
	}
}
