//go:build !linux

package listen

import (
	"errors"
	"net"
	"time"
)

// udpIO reads and writes one datagram per system call where recvmmsg and sendmmsg are missing.
type udpIO struct{ conn *net.UDPConn }

func newUDPIO(conn *net.UDPConn) (*udpIO, error) { return &udpIO{conn: conn}, nil }

// readLoop reads one datagram at a time into ms[0] and calls handle(1) until it returns false
// (nil) or the socket fails.
func (u *udpIO) readLoop(ms []inMsg, handle func(n int) bool) error {
	m := &ms[0]
	for {
		n, oobn, flags, from, err := u.conn.ReadMsgUDPAddrPort(m.buf, m.oob)
		if err != nil {
			return err
		}
		m.n, m.oobn, m.trunc, m.from = n, oobn, flags&msgTrunc != 0, from
		if !handle(1) {
			return nil
		}
	}
}

func (u *udpIO) write(ms []outMsg) (int, error) {
	for i, m := range ms {
		if _, _, err := u.conn.WriteMsgUDPAddrPort(m.buf, m.oob, m.to); err != nil {
			if i == 0 {
				return 0, err
			}
			return i, nil
		}
	}
	return len(ms), nil
}

// blockingSupported: reads through the runtime's poller only.
const blockingSupported = false

func (u *udpIO) detach(*net.UDPConn, time.Duration) error {
	return errors.New("blocking reads need Linux")
}
func (u *udpIO) read([]inMsg) (int, error) { return 0, errors.New("blocking reads need Linux") }
func (u *udpIO) stopRead()                 {}
func (u *udpIO) closeFD()                  {}
