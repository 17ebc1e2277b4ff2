package mmsg

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Detach takes conn's socket out of the runtime's poller for blocking reads with Wait, and
// returns it as a descriptor of its own (close-on-exec, blocking, receive timeout timeout); conn
// is closed. The poller is what Wait saves: a read through it costs the waiting thread two
// epoll_pwait calls and a trip through the scheduler per wake, twice what the read itself costs
// (scripts/bench-wake.sh). The receive timeout must be set for Wait to be interruptible: Linux
// restarts a socket read interrupted by a signal (the runtime installs its handlers with
// SA_RESTART) unless the socket has one, and the runtime's preemption signal is how a
// stop-the-world reaches a goroutine in a raw system call.
func Detach(conn *net.UDPConn, timeout time.Duration) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if cerr := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, fmt.Errorf("dup: %w", err)
	}
	// Closing conn deletes its registration from the poller's epoll set (Go's netpollclose)
	// before the descriptor is closed, so the copy is not watched: the file description stays
	// open through it and would otherwise keep the registration.
	if err := conn.Close(); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("clear O_NONBLOCK: %w", err)
	}
	if err := SetTimeout(fd, timeout); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// ErrTimeout is Wait's error when the receive timeout expired with nothing received.
var ErrTimeout = errors.New("receive timeout")

// Wait receives up to n datagrams with recvmmsg on fd, a socket from Detach, blocking until one
// arrives. The call is raw: the goroutine keeps its P while it waits, so the thread it wakes on
// runs Go code at once, without the scheduler; a program that waits this way needs a P to spare
// for everything else. Wait returns 0 and no error when interrupted, by a signal (after yielding,
// so that a stop-the-world or a preemption the signal asked for can happen) or by
// shutdown(SHUT_RD), and ErrTimeout when the receive timeout expired.
func (c *Call) Wait(fd, n int) (int, error) { return c.wait(fd, n, true) }

// Sleep is Wait through an ordinary system call, which gives the P up while it waits: for a
// socket that has been idle a while, so that an idle program holds no P and the runtime's
// monitor can sleep too (a goroutine that holds a P in Wait is preempted every 10 ms).
func (c *Call) Sleep(fd, n int) (int, error) { return c.wait(fd, n, false) }

func (c *Call) wait(fd, n int, raw bool) (int, error) {
	// Direct calls: the pointer conversion must be in the call's arguments (unsafe.Pointer rule 4).
	var r uintptr
	var e unix.Errno
	if raw {
		r, _, e = unix.RawSyscall6(c.trap, uintptr(fd), uintptr(unsafe.Pointer(c.hdr)), uintptr(n), unix.MSG_WAITFORONE, 0, 0)
	} else {
		r, _, e = unix.Syscall6(c.trap, uintptr(fd), uintptr(unsafe.Pointer(c.hdr)), uintptr(n), unix.MSG_WAITFORONE, 0, 0)
	}
	if raw && (e == unix.EINTR || e == unix.EAGAIN) {
		runtime.Gosched() // where the preemption a signal asked for happens
	}
	switch e {
	case 0:
		return int(r), nil
	case unix.EINTR:
		return 0, nil
	case unix.EAGAIN:
		return 0, ErrTimeout
	}
	return 0, os.NewSyscallError(c.name, e)
}

// SetTimeout sets fd's receive timeout; zero waits for ever (Sleep only: see Detach).
func SetTimeout(fd int, d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	return os.NewSyscallError("setsockopt SO_RCVTIMEO", unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
}

// SendTo sends n datagrams with sendmmsg on fd, a socket from Detach. A full send buffer is
// waited for in an ordinary system call, which gives the P up meanwhile; the raw call never
// blocks.
func (c *Call) SendTo(fd, n int) (int, error) {
	for {
		r, _, e := unix.RawSyscall6(c.trap, uintptr(fd), uintptr(unsafe.Pointer(c.hdr)), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			r, _, e = unix.Syscall6(c.trap, uintptr(fd), uintptr(unsafe.Pointer(c.hdr)), uintptr(n), 0, 0, 0)
		}
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, os.NewSyscallError(c.name, e)
	}
}
