//go:build !linux

package listen

import "net"

// udpIO reads and writes one datagram per system call where recvmmsg and sendmmsg are missing.
type udpIO struct{ conn *net.UDPConn }

func newUDPIO(conn *net.UDPConn) (*udpIO, error) { return &udpIO{conn: conn}, nil }

func (u *udpIO) read(ms []inMsg) (int, error) {
	m := &ms[0]
	n, oobn, flags, from, err := u.conn.ReadMsgUDPAddrPort(m.buf, m.oob)
	if err != nil {
		return 0, err
	}
	m.n, m.oobn, m.trunc, m.from = n, oobn, flags&msgTrunc != 0, from
	return 1, nil
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
