package mmsg

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Call is one side's recvmmsg or sendmmsg over a fixed array of headers. The calls are made raw on
// the non-blocking socket through RawConn, so that the runtime poller still waits for readiness:
// a sendmmsg of a batch takes longer than the runtime's 20 us syscall threshold, and in an
// ordinary system call the scheduler would hand the P to another thread meanwhile, which on one
// core costs more in context switches than the batching saves. Neither call blocks (both return
// EAGAIN instead), so holding the P is fine. The function handed to RawConn is made once: a
// closure made per call would be allocated on every batch. A Call is not safe for concurrent use.
type Call struct {
	rc    syscall.RawConn
	send  bool
	trap  uintptr
	name  string
	hdr   *unix.Mmsghdr
	n     int // datagrams to pass; set before each call
	done  int
	errno syscall.Errno
	calls int // system calls made by Loop, for tests
	fn    func(fd uintptr) bool
}

// NewRecv returns a recvmmsg call over hdrs, NewSend a sendmmsg call.
func NewRecv(rc syscall.RawConn, hdrs []unix.Mmsghdr) *Call {
	return newCall(rc, false, unix.SYS_RECVMMSG, "recvmmsg", hdrs)
}

// NewSend returns a sendmmsg call over hdrs.
func NewSend(rc syscall.RawConn, hdrs []unix.Mmsghdr) *Call {
	return newCall(rc, true, unix.SYS_SENDMMSG, "sendmmsg", hdrs)
}

func newCall(rc syscall.RawConn, send bool, trap uintptr, name string, hdrs []unix.Mmsghdr) *Call {
	c := &Call{rc: rc, send: send, trap: trap, name: name, hdr: &hdrs[0]}
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

// Do makes the call on the first n headers, waiting for the socket whenever it would block, and
// returns how many datagrams were received or sent.
func (c *Call) Do(n int) (int, error) {
	c.n, c.done, c.errno = n, 0, 0
	var err error
	if c.send {
		err = c.rc.Write(c.fn)
	} else {
		err = c.rc.Read(c.fn)
	}
	if err != nil {
		return 0, err
	}
	if c.errno != 0 {
		return 0, os.NewSyscallError(c.name, c.errno)
	}
	return c.done, nil
}

// Loop receives with recvmmsg on the first n headers until handle returns false or the socket
// fails, calling handle with the number of datagrams of each batch; handle must make the headers
// ready for the next call (their buffers may have been handed on). Unlike a Do per batch, a batch
// short of n (the queue is drained) is followed by a wait for readiness, not by a read that would
// find nothing: one system call per wake instead of two. That is safe because it all happens
// within one RawConn.Read, whose readiness is reset only on entry: a datagram arriving after the
// short batch marks the socket ready and the wait returns at once.
//
// A full batch is followed by another read without a wait, so a socket that is closed or given a
// deadline while the queue stays full is noticed only by handle: check for that in it.
func (c *Call) Loop(n int, handle func(got int) bool) error {
	if c.send {
		panic("mmsg: Loop on a send call")
	}
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(c.trap, fd, uintptr(unsafe.Pointer(c.hdr)), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
			c.calls++
			switch e {
			case 0:
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
			got := int(r)
			if !handle(got) {
				return true
			}
			if got < n {
				return false
			}
		}
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return os.NewSyscallError(c.name, errno)
	}
	return nil
}

// SetMsghdr points h at one datagram: its buffer (through iov), and optionally an address and
// control data (name nil on a connected socket).
func SetMsghdr(h *unix.Msghdr, iov *unix.Iovec, name *unix.RawSockaddrInet6, namelen uint32, buf, oob []byte) {
	iov.Base = unsafe.SliceData(buf)
	iov.SetLen(len(buf))
	*h = unix.Msghdr{Iov: iov}
	if name != nil {
		h.Name, h.Namelen = (*byte)(unsafe.Pointer(name)), namelen
	}
	h.SetIovlen(1)
	if len(oob) > 0 {
		h.Control = &oob[0]
		h.SetControllen(len(oob))
	}
}
