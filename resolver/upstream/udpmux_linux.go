package upstream

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/dnsfence/dnsfence/resolver/internal/mmsg"
)

// mmsgIO reads replies with recvmmsg and sends queries with sendmmsg, a batch per system call.
// The reading side belongs to the socket's reader goroutine, the sending side to the exchange
// flushing the send queue.
//
// Queries leave through a twin socket when the kernel allows it (see twinSocket): the connected
// socket is in the runtime's poller, which always asks for EPOLLOUT, and every datagram sent on it
// wakes the poller's waiting thread once the kernel frees it (on loopback, at once) for nothing:
// a thread wake-up per forwarded query, which dnsdist, sending on sockets no poller watches,
// does not pay.
type mmsgIO struct {
	rhdr, shdr [muxBatch]unix.Mmsghdr
	riov, siov [muxBatch]unix.Iovec
	recv, send *mmsg.Call
	// twin is the socket queries are sent on, or -1 to send on the connected one; to is the
	// upstream's address (tolen bytes of it), given with every datagram the twin sends.
	twin  int
	to    unix.RawSockaddrInet6
	tolen uint32
}

// newMuxIO returns c's mmsgIO, sending through a twin socket if twins (twinsWork, asked once per
// mux: the kernel does not change).
func newMuxIO(c *net.UDPConn, twins bool) (muxIO, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	u := &mmsgIO{twin: -1}
	u.recv, u.send = mmsg.NewRecv(rc, u.rhdr[:]), mmsg.NewSend(rc, u.shdr[:])
	if to, ok := c.RemoteAddr().(*net.UDPAddr); ok && twins {
		u.twin, _ = u.twinSocket(rc, to.AddrPort()) // without one, queries go out on c
	}
	return u, nil
}

func (u *mmsgIO) readLoop(b *readBatch, deliver func(n int)) error {
	n := min(len(b.bufs), muxBatch)
	for i := range n {
		mmsg.SetMsghdr(&u.rhdr[i].Hdr, &u.riov[i], nil, 0, b.bufs[i], nil)
	}
	return u.recv.Loop(n, func(got int) bool {
		for i := range got {
			b.n[i] = int(u.rhdr[i].Len)
			if u.rhdr[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
				b.n[i] = len(b.bufs[i]) // cut short, whatever its length
			}
		}
		deliver(got)
		return true // a close is seen by the next wait: nothing is sent on a socket being closed
	})
}

func (u *mmsgIO) write(bufs [][]byte) (int, error) {
	n := min(len(bufs), muxBatch)
	var to *unix.RawSockaddrInet6 // the connected socket needs no address
	if u.twin >= 0 {
		to = &u.to
	}
	for i := range n {
		mmsg.SetMsghdr(&u.shdr[i].Hdr, &u.siov[i], to, u.tolen, bufs[i], nil)
	}
	if u.twin < 0 {
		return u.send.Do(n)
	}
	return u.send.SendTo(u.twin, n)
}

// close closes the twin; the caller closes the connected socket. No exchange is sending then
// (the mux closes a socket only once no exchange holds it).
func (u *mmsgIO) close() {
	if u.twin >= 0 {
		_ = unix.Close(u.twin)
		u.twin = -1
	}
}

// twinsWork reports whether the kernel delivers a datagram to the connected socket of a
// reuseport group whose 4-tuple it matches, never to an unconnected member: Linux 5.3 on
// ("udp: correct reuseport selection with connected sockets", backported to some earlier
// stable kernels, which keep sending on the connected socket here).
func twinsWork() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	major, minor, ok := kernelVersion(unix.ByteSliceToString(u.Release[:]))
	return ok && (major > 5 || major == 5 && minor >= 3)
}

// kernelVersion reads the major and minor numbers of a kernel release ("6.1.0-18-amd64").
func kernelVersion(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	end := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		parts[1] = parts[1][:end]
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}

// twinSocket opens the socket the queries of the connected socket rc (connected to an upstream
// at address up) are sent on: bound to the same address and port, outside the poller and
// blocking (mmsg.Call.SendTo), and taking no datagram (a socket filter drops all).
//
// Both get SO_REUSEPORT only now, after the connected socket's port was picked at connect: an
// ephemeral port is then one no other socket holds. (The kernel's choice of an ephemeral port
// for a socket with SO_REUSEPORT skips no port that another such socket of the same user holds,
// so the pair could have joined, say, a listener's group.) The twin is connected too, to the
// upstream's address and port 0, from which no datagram comes: a connected socket takes only
// datagrams from its peer and never those the group spreads over its members, so even a socket
// that later binds the port with SO_REUSEPORT loses none of its datagrams to the twin. The
// upstream's replies and ICMP errors match the connected socket's address and port exactly, and
// reach only it. sendmmsg gives the upstream's address with every datagram (a connected UDP
// socket may send elsewhere).
func (u *mmsgIO) twinSocket(rc syscall.RawConn, up netip.AddrPort) (int, error) {
	var (
		local  unix.Sockaddr
		v6only int
		err    error
	)
	if cerr := rc.Control(func(fd uintptr) {
		if err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return
		}
		if local, err = unix.Getsockname(int(fd)); err != nil {
			return
		}
		if _, ok := local.(*unix.SockaddrInet6); ok {
			v6only, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		}
	}); cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, err
	}
	// The upstream's address in the socket's family (an IPv4 one is mapped on an IPv6 socket).
	family, ip := unix.AF_INET, up.Addr().Unmap()
	if _, ok := local.(*unix.SockaddrInet6); ok {
		family, ip = unix.AF_INET6, netip.AddrFrom16(ip.As16()).WithZone(ip.Zone())
	} else if !ip.Is4() {
		return -1, fmt.Errorf("upstream %s on an IPv4 socket", up)
	}
	if u.tolen, err = mmsg.PutSockaddr(&u.to, netip.AddrPortFrom(ip, up.Port())); err != nil {
		return -1, err
	}
	var peer unix.Sockaddr = &unix.SockaddrInet6{Addr: ip.As16(), ZoneId: u.to.Scope_id}
	if family == unix.AF_INET {
		peer = &unix.SockaddrInet4{Addr: ip.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, err
	}
	drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	err = unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop[0]})
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	if err == nil && family == unix.AF_INET6 {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only)
	}
	if err == nil {
		err = unix.Bind(fd, local)
	}
	if err == nil {
		err = unix.Connect(fd, peer)
	}
	if err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
