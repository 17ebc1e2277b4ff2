package upstream

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// echoUpstream is a UDP DNS server on loopback that answers every A query with 192.0.2.1 and
// records the source address of each query.
type echoUpstream struct {
	addr string
	mu   sync.Mutex
	from []netip.AddrPort
}

func startEchoUpstream(t *testing.T) *echoUpstream { return startEchoUpstreamOn(t, "127.0.0.1:0") }

func startEchoUpstreamOn(t *testing.T, addr string) *echoUpstream {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &echoUpstream{addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		e.mu.Lock()
		e.from = append(e.from, w.RemoteAddr().(*net.UDPAddr).AddrPort())
		e.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return e
}

func (e *echoUpstream) sources() []netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]netip.AddrPort(nil), e.from...)
}

func muxExchange(t *testing.T, m *udpMux, name string) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := m.exchange(ctx, q, time.Time{})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(r.Answer) != 1 {
		t.Fatalf("%s: answer %v", name, r.Answer)
	}
}

// twinMux starts an upstream and a mux to it, makes one exchange and returns the mux, its
// socket and that socket's mmsgIO, which has a twin. It skips the test where twins are not used.
func twinMux(t *testing.T) (*echoUpstream, *udpMux, *muxSock, *mmsgIO) {
	t.Helper()
	return twinMuxTo(t, startEchoUpstream)
}

func twinMuxTo(t *testing.T, start func(*testing.T) *echoUpstream) (*echoUpstream, *udpMux, *muxSock, *mmsgIO) {
	t.Helper()
	if !twinsWork() {
		t.Skip("kernel older than 5.3: queries are sent on the connected socket, no twin")
	}
	up := start(t)
	m := newUDPMux(up.addr)
	t.Cleanup(m.close)
	muxExchange(t, m, "first.example.")
	m.mu.Lock()
	s := m.cur
	m.mu.Unlock()
	if s == nil {
		t.Fatal("mux has no socket")
	}
	io := s.io.(*mmsgIO)
	if io.twin < 0 {
		t.Fatal("no twin socket")
	}
	return up, m, s, io
}

// writeEvents returns how many EPOLLOUT edges the connected socket of s raised since the last
// call, as an epoll instance of the test's own (ep) sees them. Every datagram sent on a socket
// raises one when the kernel frees it: that edge is what wakes the runtime poller's thread.
func writeEvents(t *testing.T, ep int) int {
	t.Helper()
	events := make([]unix.EpollEvent, 8)
	n, err := unix.EpollWait(ep, events, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMuxSendsOnTwin: queries leave through the twin socket, from the connected socket's address
// and port, so the connected socket (the one in the runtime's poller) raises no EPOLLOUT edge
// per query; the replies still reach the connected socket's reader.
func TestMuxSendsOnTwin(t *testing.T) {
	up, m, s, io := twinMux(t)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	rc, err := s.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLET, Fd: int32(fd)})
	}); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	writeEvents(t, ep) // the edge of a writable socket, at registration

	for i := range 50 {
		muxExchange(t, m, "q"+string(rune('a'+i%26))+".example.")
	}
	if n := writeEvents(t, ep); n != 0 {
		t.Errorf("connected socket raised %d EPOLLOUT edges over 50 queries, want 0", n)
	}
	local := s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, from := range up.sources() {
		if from != local {
			t.Fatalf("upstream saw a query from %s, want the connected socket's %s", from, local)
		}
	}

	// The control: a query sent on the connected socket does raise an edge.
	twin := io.twin
	io.twin = -1
	muxExchange(t, m, "control.example.")
	io.twin = twin
	if n := writeEvents(t, ep); n == 0 {
		t.Error("a query sent on the connected socket raised no EPOLLOUT edge: the check above proves nothing")
	}
}

// TestMuxTwinTakesNoDatagrams: datagrams from other sources, which the connected socket does not
// accept, are dropped rather than queued on the twin, which nobody reads.
func TestMuxTwinTakesNoDatagrams(t *testing.T) {
	_, m, s, io := twinMux(t)
	other, err := net.DialUDP("udp", nil, s.conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for range 3 {
		if _, err := other.Write([]byte("not from the upstream")); err != nil {
			t.Fatal(err)
		}
	}
	queued, err := unix.IoctlGetInt(io.twin, unix.SIOCINQ)
	if err != nil {
		t.Fatal(err)
	}
	if queued != 0 {
		t.Errorf("twin has %d bytes queued, want 0 (dropped)", queued)
	}
	muxExchange(t, m, "after.example.")
}

// TestMuxTwinOverIPv6: an upstream on ::1 gets its queries through the twin as well.
func TestMuxTwinOverIPv6(t *testing.T) {
	if l, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		l.Close()
	}
	up, m, s, _ := twinMuxTo(t, func(t *testing.T) *echoUpstream { return startEchoUpstreamOn(t, "[::1]:0") })
	muxExchange(t, m, "second.example.")
	local := s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, from := range up.sources() {
		if from != local {
			t.Fatalf("upstream saw a query from %s, want %s", from, local)
		}
	}
}

// TestMuxTwinSharesNoDatagrams: a socket that binds the same address and port with
// SO_REUSEPORT later (the kernel may give an ephemeral port bind exactly that) gets every
// datagram sent to it: the twin, connected, takes no share of the group's.
func TestMuxTwinSharesNoDatagrams(t *testing.T) {
	_, m, s, _ := twinMux(t)
	local := s.conn.LocalAddr().(*net.UDPAddr)
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", local.String())
	if err != nil {
		t.Fatalf("bind %s with SO_REUSEPORT: %v", local, err)
	}
	defer pc.Close()
	const n = 64
	for i := range n {
		sender, err := net.DialUDP("udp", nil, local) // a fresh source port each: the group spreads by it
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sender.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		sender.Close()
	}
	_ = pc.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 16)
	got := 0
	for got < n {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			break
		}
		got++
	}
	if got != n {
		t.Errorf("the socket sharing the port got %d of %d datagrams", got, n)
	}
	muxExchange(t, m, "after.example.")
}

// TestMuxClosesTwin: retiring a socket closes its twin too.
func TestMuxClosesTwin(t *testing.T) {
	_, m, _, io := twinMux(t)
	fd := io.twin
	link := fdLink(fd)
	if link == "" {
		t.Fatalf("twin fd %d not open", fd)
	}
	m.close()
	deadline := time.Now().Add(2 * time.Second)
	for m.sockets() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if fdLink(fd) == link { // closed, or the number reused for another file
		t.Errorf("twin socket %s still open as fd %d after the mux closed", link, fd)
	}
}

// fdLink returns what fd refers to ("socket:[inode]"), or "" if it is not open.
func fdLink(fd int) string {
	l, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return l
}

func TestKernelVersion(t *testing.T) {
	for _, c := range []struct {
		release      string
		major, minor int
		ok           bool
	}{
		{"6.18.44-fc-v1045", 6, 18, true},
		{"5.3.0", 5, 3, true},
		{"5.2.17-generic", 5, 2, true},
		{"4.19", 4, 19, true},
		{"5.10rc1", 5, 10, true},
		{"6", 0, 0, false},
		{"x.y.z", 0, 0, false},
	} {
		major, minor, ok := kernelVersion(c.release)
		if major != c.major || minor != c.minor || ok != c.ok {
			t.Errorf("kernelVersion(%q) = %d, %d, %v; want %d, %d, %v", c.release, major, minor, ok, c.major, c.minor, c.ok)
		}
	}
}
