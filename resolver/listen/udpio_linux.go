package listen

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dnsfence/dnsfence/resolver/internal/mmsg"
)

// udpIO reads and writes batches of datagrams with recvmmsg and sendmmsg (see package mmsg).
// Nothing here allocates per datagram.
type udpIO struct {
	// The receiving side belongs to the reader goroutine, the sending side to the flushing worker.
	rhdr  []unix.Mmsghdr
	riov  []unix.Iovec
	rname []unix.RawSockaddrInet6 // room for either family
	shdr  []unix.Mmsghdr
	siov  []unix.Iovec
	sname []unix.RawSockaddrInet6

	recv, send *mmsg.Call
	// fd is the socket once detach has taken it out of the poller; -1 before.
	fd    int
	dirty int // receive headers read has filled since it pointed them at their buffers
	// readTimeout is how long read waits holding its P; after that much silence it waits in an
	// ordinary system call without a timeout (asleep) until the next datagram.
	readTimeout time.Duration
	asleep      atomic.Bool // (atomic for the tests, which watch it)
	quietSince  time.Time   // when the reads began to return nothing
}

// blockingSupported: detach and read exist here.
const blockingSupported = true

func newUDPIO(conn *net.UDPConn) (*udpIO, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	u := &udpIO{
		fd: -1, dirty: udpBatch,
		rhdr: make([]unix.Mmsghdr, udpBatch), riov: make([]unix.Iovec, udpBatch), rname: make([]unix.RawSockaddrInet6, udpBatch),
		shdr: make([]unix.Mmsghdr, udpBatch), siov: make([]unix.Iovec, udpBatch), sname: make([]unix.RawSockaddrInet6, udpBatch),
	}
	u.recv = mmsg.NewRecv(rc, u.rhdr)
	u.send = mmsg.NewSend(rc, u.shdr)
	return u, nil
}

// readLoop reads batches of datagrams into ms (len(ms) <= udpBatch), waiting while there are
// none, and calls handle with the number read until it returns false (nil) or the socket fails.
// handle may swap the buffers of ms: the headers are pointed at them again after it returns.
func (u *udpIO) readLoop(ms []inMsg, handle func(n int) bool) error {
	arm := func(ms []inMsg) {
		for i := range ms {
			mmsg.SetMsghdr(&u.rhdr[i].Hdr, &u.riov[i], &u.rname[i], unix.SizeofSockaddrInet6, ms[i].buf, ms[i].oob)
		}
	}
	arm(ms)
	return u.recv.Loop(len(ms), func(n int) bool {
		for i := range n {
			m, h := &ms[i], &u.rhdr[i]
			m.n, m.oobn = int(h.Len), int(h.Hdr.Controllen)
			m.trunc = h.Hdr.Flags&unix.MSG_TRUNC != 0
			m.from = mmsg.AddrPort(&u.rname[i])
		}
		more := handle(n)
		arm(ms[:n])
		return more
	})
}

// detach takes conn out of the runtime's poller for read (see mmsg.Detach); conn is closed, and
// the socket is u's until closeFD.
func (u *udpIO) detach(conn *net.UDPConn, readTimeout time.Duration) error {
	fd, err := mmsg.Detach(conn, readTimeout)
	if err != nil {
		return err
	}
	u.fd, u.readTimeout = fd, readTimeout
	return nil
}

// read waits for datagrams on the detached socket and reads up to len(ms) of them into ms, keeping
// the thread's P (see mmsg.Call.Wait), or asleep without one once the socket has been idle for
// readTimeout (mmsg.Call.Sleep); 0 means interrupted. The buffers of ms may be swapped between
// calls.
func (u *udpIO) read(ms []inMsg) (int, error) {
	for i := range ms[:min(u.dirty, len(ms))] {
		mmsg.SetMsghdr(&u.rhdr[i].Hdr, &u.riov[i], &u.rname[i], unix.SizeofSockaddrInet6, ms[i].buf, ms[i].oob)
	}
	var n int
	var err error
	switch {
	case u.asleep.Load():
		if n, err = u.recv.Sleep(u.fd, len(ms)); n > 0 {
			u.asleep.Store(false)
			err = mmsg.SetTimeout(u.fd, u.readTimeout) // Wait needs it to be interruptible
		}
	default:
		n, err = u.recv.Wait(u.fd, len(ms))
		if n > 0 || err != nil && !errors.Is(err, mmsg.ErrTimeout) {
			u.quietSince = time.Time{}
			break
		}
		// The runtime's monitor interrupts a read holding its P every 10 ms, so the timeout
		// itself may never expire: measure the silence across reads (the clock is read only
		// when one returns empty).
		now := time.Now()
		if u.quietSince.IsZero() {
			u.quietSince = now
		}
		if err != nil || now.Sub(u.quietSince) >= u.readTimeout {
			u.asleep.Store(true)
			u.quietSince = time.Time{}
			err = mmsg.SetTimeout(u.fd, 0)
		}
	}
	u.dirty = n
	for i := range n {
		m, h := &ms[i], &u.rhdr[i]
		m.n, m.oobn = int(h.Len), int(h.Hdr.Controllen)
		m.trunc = h.Hdr.Flags&unix.MSG_TRUNC != 0
		m.from = mmsg.AddrPort(&u.rname[i])
	}
	return n, err
}

// stopRead makes a read waiting on the detached socket return (recvmmsg on a UDP socket shut
// down for reading returns at once); replies can still be sent.
func (u *udpIO) stopRead() { _ = unix.Shutdown(u.fd, unix.SHUT_RD) }

// closeFD closes the detached socket.
func (u *udpIO) closeFD() { _ = unix.Close(u.fd) }

// write sends ms (at most udpBatch) and returns how many were sent; an error is the first
// unsent datagram's.
func (u *udpIO) write(ms []outMsg) (int, error) {
	for i, m := range ms {
		namelen, err := mmsg.PutSockaddr(&u.sname[i], m.to)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			ms = ms[:i] // send those before it; the next call reports it
			break
		}
		mmsg.SetMsghdr(&u.shdr[i].Hdr, &u.siov[i], &u.sname[i], namelen, m.buf, m.oob)
	}
	if u.fd >= 0 {
		return u.send.SendTo(u.fd, len(ms))
	}
	return u.send.Do(len(ms))
}
