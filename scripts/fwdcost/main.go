//go:build linux

// Command fwdcost is the least a Go UDP forwarder can do per query, for scripts/bench-tail.sh
// (FWD_<name> variants) to measure against dnsdist and dnsfence on misses: it rewrites each query's ID, sends it to one
// upstream and sends the reply back to its client with the client's ID, and nothing else (no
// parsing, cache, validation or metrics). Three ways of structuring that:
//
//   - poll: two goroutines on the runtime's poller, as a Go program would write it: one reads
//     clients and sends upstream, the other reads the upstream and answers clients. No hand-over
//     between goroutines per query.
//   - handoff: dnsfence's structure in its poller mode: a reader goroutine hands each query to a
//     worker goroutine, which sends it upstream and waits for its reply on a channel; the
//     upstream's reader goroutine delivers the reply there, and the worker answers the client.
//   - raw: dnsdist's structure: two locked OS threads, each in a blocking RawSyscall6 read that
//     keeps its P (GOMAXPROCS is raised by 2 for them), the first sending queries upstream and
//     the second answering clients. A measurement, not a design: a stop-the-world waits for the
//     next packet or the read's timeout (50 ms) on each thread.
//
// IDs are taken in turn from a table of 65,536 slots, so this is no defence against spoofing;
// it is a measurement, on loopback only.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:15574", "IPv4 loopback `address` to answer on")
	upstream := flag.String("upstream", "127.0.0.1:15785", "IPv4 loopback `address` of the upstream")
	mode := flag.String("mode", "poll", "how to forward: poll, handoff or raw")
	flag.Parse()
	err := run(*listen, *upstream, *mode)
	fmt.Fprintln(os.Stderr, "fwdcost:", err)
	os.Exit(1)
}

// run forwards until a socket fails.
func run(listen, upstream, mode string) error {
	ap, err := loopback(listen)
	if err != nil {
		return err
	}
	up, err := loopback(upstream)
	if err != nil {
		return err
	}
	switch mode {
	case "poll", "handoff":
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(up))
		if err != nil {
			return err
		}
		return servePoll(c, u, mode == "handoff")
	case "raw":
		c, u, err := rawSockets(ap, up)
		if err != nil {
			return err
		}
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 2) // a P for each reading thread
		return serveRaw(c, u, new(atomic.Bool))
	}
	return fmt.Errorf("unknown -mode %q", mode)
}

func loopback(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err == nil && (!ap.Addr().Is4() || !ap.Addr().IsLoopback()) {
		err = fmt.Errorf("%s is not an IPv4 loopback address", ap.Addr())
	}
	return ap, err
}

// pending is a query sent upstream, by the ID it was sent with.
type pending struct {
	client netip.AddrPort
	id     uint16
	reply  chan []byte // handoff mode: where the reply goes
}

type table struct {
	mu   sync.Mutex
	next uint16
	q    [1 << 16]pending
}

// add records a query and returns the ID to send it with.
func (t *table) add(p pending) uint16 {
	t.mu.Lock()
	id := t.next
	t.next++
	t.q[id] = p
	t.mu.Unlock()
	return id
}

func (t *table) take(id uint16) pending {
	t.mu.Lock()
	p := t.q[id]
	t.q[id] = pending{}
	t.mu.Unlock()
	return p
}

func setID(b []byte, id uint16) { b[0], b[1] = byte(id>>8), byte(id) }
func getID(b []byte) uint16     { return uint16(b[0])<<8 | uint16(b[1]) }

// servePoll forwards from clients on c to the upstream u is connected to, until either fails.
func servePoll(c, u *net.UDPConn, handoff bool) error {
	t := new(table)
	errs := make(chan error, 2)
	go func() { // the upstream's replies
		b := make([]byte, 4096)
		for {
			n, err := u.Read(b)
			if err != nil {
				errs <- err
				return
			}
			if n < 12 {
				continue
			}
			p := t.take(getID(b))
			switch {
			case p.reply != nil:
				p.reply <- append([]byte(nil), b[:n]...)
			case p.client.IsValid():
				setID(b, p.id)
				_, _ = c.WriteToUDPAddrPort(b[:n], p.client)
			}
		}
	}()
	type job struct {
		b    []byte
		from netip.AddrPort
	}
	var jobs chan job
	if handoff {
		jobs = make(chan job)
		for range 64 {
			go func() {
				reply := make(chan []byte, 1)
				for j := range jobs {
					id := getID(j.b)
					setID(j.b, t.add(pending{client: j.from, id: id, reply: reply}))
					if _, err := u.Write(j.b); err != nil {
						continue
					}
					r := <-reply
					setID(r, id)
					_, _ = c.WriteToUDPAddrPort(r, j.from)
				}
			}()
		}
	}
	go func() { // the clients' queries
		b := make([]byte, 4096)
		for {
			n, from, err := c.ReadFromUDPAddrPort(b)
			if err != nil {
				errs <- err
				return
			}
			if n < 12 {
				continue
			}
			if handoff {
				jobs <- job{append([]byte(nil), b[:n]...), from}
				continue
			}
			setID(b, t.add(pending{client: from, id: getID(b)}))
			_, _ = u.Write(b[:n])
		}
	}()
	return <-errs
}

// rawSockets opens the client socket, bound to ap, and the upstream's, connected to up.
func rawSockets(ap, up netip.AddrPort) (c, u int, err error) {
	if c, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0); err != nil {
		return
	}
	if err = syscall.Bind(c, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return
	}
	if u, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0); err != nil {
		return
	}
	if err = syscall.Connect(u, &syscall.SockaddrInet4{Port: int(up.Port()), Addr: up.Addr().As4()}); err != nil {
		return
	}
	// A thread in a raw read keeps its P, so a stop-the-world (a collection's) waits for the read
	// to return: bound that wait, as dnsfence's listener does.
	tv := syscall.NsecToTimeval(readTimeout.Nanoseconds())
	for _, fd := range []int{c, u} {
		if err = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
			return
		}
	}
	return
}

// readTimeout bounds each blocking read in the raw mode (dnsfence's listener uses the same).
const readTimeout = 50 * time.Millisecond

// serveRaw forwards from clients on socket c to the upstream socket u is connected to, until a
// read fails or, once stop is set, a read returns nothing (shutdown(SHUT_RD) wakes a blocked
// read that way). It needs two Ps beyond the caller's: each reading thread keeps its own.
func serveRaw(c, u int, stop *atomic.Bool) error {
	t := new(table)
	errs := make(chan error, 2)
	go func() { // the clients' queries
		runtime.LockOSThread()
		b := make([]byte, 4096)
		var from [syscall.SizeofSockaddrInet4]byte
		for {
			n, ok, err := recvRaw(c, b, from[:], stop)
			if !ok {
				errs <- err
				return
			}
			if n < 12 {
				continue
			}
			port := uint16(from[2])<<8 | uint16(from[3])
			addr := netip.AddrFrom4([4]byte(from[4:8]))
			setID(b, t.add(pending{client: netip.AddrPortFrom(addr, port), id: getID(b)}))
			_, _, _ = syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(u), uintptr(unsafe.Pointer(&b[0])), uintptr(n), 0, 0, 0)
		}
	}()
	go func() { // the upstream's replies
		runtime.LockOSThread()
		b := make([]byte, 4096)
		var to [syscall.SizeofSockaddrInet4]byte
		to[0] = syscall.AF_INET // sockaddr_in's family, little-endian on the hosts this runs on
		for {
			n, ok, err := recvRaw(u, b, nil, stop)
			if !ok {
				errs <- err
				return
			}
			if n < 12 {
				continue
			}
			p := t.take(getID(b))
			if !p.client.IsValid() {
				continue
			}
			setID(b, p.id)
			to[2], to[3] = byte(p.client.Port()>>8), byte(p.client.Port())
			a := p.client.Addr().As4()
			copy(to[4:8], a[:])
			_, _, _ = syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(c), uintptr(unsafe.Pointer(&b[0])), uintptr(n), 0,
				uintptr(unsafe.Pointer(&to[0])), uintptr(len(to)))
		}
	}()
	return <-errs
}

// recvRaw reads a datagram from fd into b with a blocking raw system call, and its sender into
// from if not nil. ok is false when the reading should end: on an error, or (err nil) when stop
// is set and a read returns nothing, as it does once shutdown(SHUT_RD) woke it.
func recvRaw(fd int, b, from []byte, stop *atomic.Bool) (n int, ok bool, err error) {
	for {
		var fp, lp uintptr
		fl := uint32(len(from))
		if from != nil {
			fp, lp = uintptr(unsafe.Pointer(&from[0])), uintptr(unsafe.Pointer(&fl))
		}
		r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])),
			uintptr(len(b)), 0, fp, lp)
		switch {
		case e == syscall.EINTR, e == syscall.EAGAIN: // the runtime's preemption signal; readTimeout
			// The raw calls are not preemption points: yield, so that a stop-the-world or a
			// preempting signal that ended the read gets its P.
			runtime.Gosched()
		case e != 0:
			return 0, false, e
		case r == 0 && stop.Load():
			return 0, false, nil
		default:
			return int(r), true, nil
		}
	}
}
