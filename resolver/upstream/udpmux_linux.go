package upstream

import (
	"net"

	"golang.org/x/sys/unix"

	"github.com/dnsfence/dnsfence/resolver/internal/mmsg"
)

// mmsgIO reads replies with recvmmsg and sends queries with sendmmsg, a batch per system call.
// The reading side belongs to the socket's reader goroutine, the sending side to the exchange
// flushing the send queue.
type mmsgIO struct {
	rhdr, shdr [muxBatch]unix.Mmsghdr
	riov, siov [muxBatch]unix.Iovec
	recv, send *mmsg.Call
}

func newMuxIO(c *net.UDPConn) (muxIO, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	u := &mmsgIO{}
	u.recv, u.send = mmsg.NewRecv(rc, u.rhdr[:]), mmsg.NewSend(rc, u.shdr[:])
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
	for i := range n {
		mmsg.SetMsghdr(&u.shdr[i].Hdr, &u.siov[i], nil, 0, bufs[i], nil)
	}
	return u.send.Do(n)
}
