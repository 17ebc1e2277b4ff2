//go:build linux

package main

import (
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/miekg/dns"
)

// TestForward: in each mode, queries reach the upstream with an ID of the forwarder's and come
// back to the client with the client's own ID and the upstream's answer.
func TestForward(t *testing.T) {
	upIDs := make(chan uint16, 100)
	up := startUpstream(t, func(w dns.ResponseWriter, q *dns.Msg) {
		upIDs <- q.Id
		m := new(dns.Msg).SetReply(q)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)})
		_ = w.WriteMsg(m)
	})
	for _, mode := range []string{"poll", "handoff", "raw"} {
		t.Run(mode, func(t *testing.T) {
			addr := startForwarder(t, mode, up)
			c := &dns.Client{Net: "udp"}
			for i := range 20 {
				q := new(dns.Msg).SetQuestion(dns.Fqdn("n"+string(rune('a'+i))+".example"), dns.TypeA)
				q.Id = uint16(1000 + i*7)
				r, _, err := c.Exchange(q, addr) // fails unless the reply has q's ID
				if err != nil {
					t.Fatalf("query %d: %v", i, err)
				}
				if len(r.Answer) != 1 || r.Answer[0].Header().Name != q.Question[0].Name {
					t.Fatalf("query %d: answer %v, want the upstream's A for %s", i, r.Answer, q.Question[0].Name)
				}
				if id := <-upIDs; id != uint16(i) {
					t.Errorf("query %d reached the upstream with ID %d, want the forwarder's %d", i, id, i)
				}
			}
			// A collection stops the world, which waits for threads in raw reads to return: it
			// must not wait for a next packet that never comes (without the reads' timeout, this
			// hangs the test binary until go test's timeout).
			runtime.GC()
		})
	}
}

func startUpstream(t *testing.T, h dns.HandlerFunc) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// startForwarder runs fwdcost's forwarder in mode on a free loopback port and returns its address.
func startForwarder(t *testing.T, mode string, up netip.AddrPort) string {
	t.Helper()
	errs := make(chan error, 1)
	var addr string
	if mode == "raw" {
		c, u, err := rawSockets(netip.MustParseAddrPort("127.0.0.1:0"), up)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := syscall.Getsockname(c)
		if err != nil {
			t.Fatal(err)
		}
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
		// Each reading thread keeps a P in its blocking read; the test needs one of its own.
		prev := runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 2)
		stop := new(atomic.Bool)
		go func() { errs <- serveRaw(c, u, stop) }()
		t.Cleanup(func() {
			stop.Store(true)
			_ = syscall.Shutdown(c, syscall.SHUT_RD) // wakes the blocked reads
			_ = syscall.Shutdown(u, syscall.SHUT_RD)
			if err := <-errs; err != nil {
				t.Errorf("serveRaw: %v", err)
			}
			_ = syscall.Close(c)
			_ = syscall.Close(u)
			runtime.GOMAXPROCS(prev)
		})
		return addr
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(up))
	if err != nil {
		t.Fatal(err)
	}
	go func() { errs <- servePoll(c, u, mode == "handoff") }()
	t.Cleanup(func() {
		_ = c.Close()
		_ = u.Close()
		<-errs // a read on a closed socket
	})
	return c.LocalAddr().String()
}
