package listen

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpIO reads and writes batches of datagrams with recvmmsg and sendmmsg. They are made as raw
// system calls on the non-blocking socket, through RawConn so that the runtime poller still waits
// for readiness: a sendmmsg of a batch takes longer than the runtime's 20 us syscall threshold, and
// in an ordinary system call the scheduler would hand the P to another thread meanwhile, which on
// one core costs more in context switches than the batching saves. Neither call blocks (both
// return EAGAIN instead), so holding the P is fine. Nothing here allocates per datagram.
type udpIO struct {
	rc syscall.RawConn
	// The receiving side belongs to the reader goroutine, the sending side to the flushing worker.
	rhdr  []unix.Mmsghdr
	riov  []unix.Iovec
	rname []unix.RawSockaddrInet6 // room for either family
	shdr  []unix.Mmsghdr
	siov  []unix.Iovec
	sname []unix.RawSockaddrInet6

	recv, send *mmsgCall
}

func newUDPIO(conn *net.UDPConn) (*udpIO, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	u := &udpIO{
		rc:   rc,
		rhdr: make([]unix.Mmsghdr, udpBatch), riov: make([]unix.Iovec, udpBatch), rname: make([]unix.RawSockaddrInet6, udpBatch),
		shdr: make([]unix.Mmsghdr, udpBatch), siov: make([]unix.Iovec, udpBatch), sname: make([]unix.RawSockaddrInet6, udpBatch),
	}
	u.recv = newMmsgCall(unix.SYS_RECVMMSG, "recvmmsg", &u.rhdr[0])
	u.send = newMmsgCall(unix.SYS_SENDMMSG, "sendmmsg", &u.shdr[0])
	return u, nil
}

// read fills ms with the datagrams waiting (at least one: it waits for the first), up to
// len(ms) <= udpBatch, and returns how many it read.
func (u *udpIO) read(ms []inMsg) (int, error) {
	for i := range ms {
		setMsghdr(&u.rhdr[i].Hdr, &u.riov[i], &u.rname[i], unix.SizeofSockaddrInet6, ms[i].buf, ms[i].oob)
	}
	n, err := u.call(false, len(ms))
	for i := range n {
		m, h := &ms[i], &u.rhdr[i]
		m.n, m.oobn = int(h.Len), int(h.Hdr.Controllen)
		m.trunc = h.Hdr.Flags&unix.MSG_TRUNC != 0
		m.from = sockaddrAddrPort(&u.rname[i])
	}
	return n, err
}

// write sends ms (at most udpBatch) and returns how many were sent; an error is the first
// unsent datagram's.
func (u *udpIO) write(ms []outMsg) (int, error) {
	for i, m := range ms {
		namelen, err := putSockaddr(&u.sname[i], m.to)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			ms = ms[:i] // send those before it; the next call reports it
			break
		}
		setMsghdr(&u.shdr[i].Hdr, &u.siov[i], &u.sname[i], namelen, m.buf, m.oob)
	}
	return u.call(true, len(ms))
}

// setMsghdr points h at one datagram: its buffer (through iov), address and control data.
func setMsghdr(h *unix.Msghdr, iov *unix.Iovec, name *unix.RawSockaddrInet6, namelen uint32, buf, oob []byte) {
	iov.Base = unsafe.SliceData(buf)
	iov.SetLen(len(buf))
	*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(name)), Namelen: namelen, Iov: iov}
	h.SetIovlen(1)
	if len(oob) > 0 {
		h.Control = &oob[0]
		h.SetControllen(len(oob))
	}
}

// mmsgCall is one side's recvmmsg or sendmmsg call, with the function handed to RawConn made
// once: a closure made per call would be allocated on every batch.
type mmsgCall struct {
	trap  uintptr
	name  string
	hdr   *unix.Mmsghdr
	n     int // datagrams to pass; set before each call
	done  int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func newMmsgCall(trap uintptr, name string, hdr *unix.Mmsghdr) *mmsgCall {
	c := &mmsgCall{trap: trap, name: name, hdr: hdr}
	c.fn = func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(c.trap, fd, uintptr(unsafe.Pointer(c.hdr)), uintptr(c.n), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait for readiness, then try again
			}
			c.done, c.errno = int(r), e
			return true
		}
	}
	return c
}

// call makes recvmmsg or sendmmsg on the headers prepared for n datagrams, waiting for the socket
// to be ready whenever it would block.
func (u *udpIO) call(send bool, n int) (int, error) {
	c := u.recv
	if send {
		c = u.send
	}
	c.n, c.done, c.errno = n, 0, 0
	var err error
	if send {
		err = u.rc.Write(c.fn)
	} else {
		err = u.rc.Read(c.fn)
	}
	if err != nil {
		return 0, err
	}
	if c.errno != 0 {
		return 0, os.NewSyscallError(c.name, c.errno)
	}
	return c.done, nil
}

// sockaddrAddrPort reads the sender's address. A link-local IPv6 sender keeps its interface as a
// numeric zone, which putSockaddr reads back.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	p := (*[2]byte)(unsafe.Pointer(&sa.Port)) // network byte order
	port := uint16(p[0])<<8 | uint16(p[1])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// putSockaddr writes ap into sa as a sockaddr_in (IPv4) or sockaddr_in6 and returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) (uint32, error) {
	a := ap.Addr()
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(ap.Port()>>8), byte(ap.Port())
	if a.Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family, sa4.Addr, sa4.Zero = unix.AF_INET, a.As4(), [8]uint8{}
		return unix.SizeofSockaddrInet4, nil
	}
	sa.Family, sa.Flowinfo, sa.Addr, sa.Scope_id = unix.AF_INET6, 0, a.As16(), 0
	if z := a.Zone(); z != "" {
		id, err := strconv.ParseUint(z, 10, 32)
		if err != nil {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return 0, err
			}
			id = uint64(ifi.Index)
		}
		sa.Scope_id = uint32(id)
	}
	return unix.SizeofSockaddrInet6, nil
}
