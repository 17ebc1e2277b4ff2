//go:build !linux

package upstream

import "net"

// connIO reads and writes one datagram per system call where recvmmsg and sendmmsg are not
// available.
type connIO struct{ c *net.UDPConn }

func newMuxIO(c *net.UDPConn, _ bool) (muxIO, error) { return connIO{c}, nil }

// twinsWork is false: sending through a twin socket is for Linux's epoll.
func twinsWork() bool { return false }

func (u connIO) readLoop(b *readBatch, deliver func(n int)) error {
	for {
		n, err := u.c.Read(b.bufs[0])
		if err != nil {
			return err
		}
		b.n[0] = n
		deliver(1)
	}
}

func (connIO) close() {}

func (u connIO) write(bufs [][]byte) (int, error) {
	if _, err := u.c.Write(bufs[0]); err != nil {
		return 0, err
	}
	return 1, nil
}
