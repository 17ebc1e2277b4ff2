package listen

import (
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// TestUDPWorkersRetire: concurrent queries start workers; once idle for udpWorkerIdle (ticks of
// the idle clock here) they are stopped, and later queries are still served.
func TestUDPWorkersRetire(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var held sync.WaitGroup
	held.Add(n)
	release := make(chan struct{})
	s, err := newUDPServer(pc, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Question[0].Name == "held.example." {
			held.Done()
			<-release
		}
		_ = w.WriteMsg(new(dns.Msg).SetReply(r))
	}), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.serve() }()
	t.Cleanup(func() { _ = s.shutdown(t.Context()) })
	ask := func(name string) {
		c := &dns.Client{}
		if _, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), pc.LocalAddr().String()); err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { ask("held.example.") })
	}
	held.Wait() // n workers are busy at once
	close(release)
	wg.Wait()
	s.inflight.Wait() // every worker is back among the idle ones
	idle := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.idle)
	}
	// The reader holds one worker for the next packet.
	if got := idle(); got < n-1 {
		t.Fatalf("%d idle workers after %d concurrent queries, want at least %d", got, n, n-1)
	}
	s.tick()
	if got := idle(); got < n-1 {
		t.Fatalf("%d idle workers after one tick, want them kept", got)
	}
	for range udpWorkerIdle / udpIdleTick {
		s.tick()
	}
	if got := idle(); got != 0 {
		t.Errorf("%d idle workers after udpWorkerIdle, want 0", got)
	}
	ask("again.example.") // still served
}

func TestUDPClientAddrWithoutZone(t *testing.T) {
	for from, want := range map[string]string{
		"[fe80::1%7]:53":       "fe80::1",
		"[::ffff:10.0.0.1]:53": "10.0.0.1",
		"192.0.2.1:53":         "192.0.2.1",
	} {
		w := &udpWorker{from: netip.MustParseAddrPort(from)}
		if got := w.ClientAddr(); got != netip.MustParseAddr(want) {
			t.Errorf("%s: client %s, want %s", from, got, want)
		}
	}
}

func TestListenBothReusePort(t *testing.T) {
	if !reusePortSupported {
		t.Skip("no SO_REUSEPORT spreading here")
	}
	pcs, ln, err := listenBoth("127.0.0.1:0", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, pc := range pcs {
		defer pc.Close()
	}
	if len(pcs) != 3 {
		t.Fatalf("%d sockets, want 3", len(pcs))
	}
	for _, pc := range pcs[1:] {
		if pc.LocalAddr().String() != pcs[0].LocalAddr().String() {
			t.Errorf("socket on %s, want %s", pc.LocalAddr(), pcs[0].LocalAddr())
		}
	}
	if ln.Addr().(*net.TCPAddr).Port != pcs[0].LocalAddr().(*net.UDPAddr).Port {
		t.Errorf("tcp on %s, udp on %s", ln.Addr(), pcs[0].LocalAddr())
	}
}
