package listen

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortSupported: Linux spreads the datagrams for an address over the sockets bound to it
// with SO_REUSEPORT (by a hash of the sender's address and port).
const reusePortSupported = true

func setReusePort(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}
