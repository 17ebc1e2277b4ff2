//go:build linux

// Command wakecost answers every UDP query with NXDOMAIN at once, through one of three ways of
// waiting for packets, so that scripts/bench-wake.sh can measure what a wake-up costs a Go
// server on one CPU at a fixed rate, apart from any DNS work:
//
//   - poll: net.UDPConn, as every Go server does; the goroutine parks in the runtime's poller.
//   - syscall: a blocking socket read on a locked OS thread through package syscall, which
//     tells the scheduler it is in a system call.
//   - raw: the same through syscall.RawSyscall6, which keeps the thread's P for the whole wait.
//     Run it with GOMAXPROCS=2: nothing else could run on a single P meanwhile, and a
//     stop-the-world would wait for the next packet. It is a measurement, not a design.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:15573", "IPv4 loopback `address` to answer on")
	mode := flag.String("mode", "poll", "how to wait for packets: poll, syscall or raw")
	flag.Parse()
	ap, err := netip.ParseAddrPort(*listen)
	if err == nil && (!ap.Addr().Is4() || !ap.Addr().IsLoopback()) {
		err = fmt.Errorf("%s is not an IPv4 loopback address", ap.Addr())
	}
	if err == nil {
		switch *mode {
		case "poll":
			err = servePoll(ap)
		case "syscall", "raw":
			err = serveBlocking(ap, *mode == "raw")
		default:
			err = fmt.Errorf("unknown -mode %q", *mode)
		}
	}
	fmt.Fprintln(os.Stderr, "wakecost:", err)
	os.Exit(1)
}

// nxdomain turns the query in b into its answer: QR set, RCODE 3.
func nxdomain(b []byte) { b[2] |= 0x80; b[3] = b[3]&0xf0 | 3 }

func servePoll(ap netip.AddrPort) error {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	b := make([]byte, 4096)
	for {
		n, from, err := c.ReadFromUDPAddrPort(b)
		if err != nil {
			return err
		}
		if n >= 12 {
			nxdomain(b)
			_, _ = c.WriteToUDPAddrPort(b[:n], from)
		}
	}
}

func serveBlocking(ap netip.AddrPort, raw bool) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return err
	}
	runtime.LockOSThread()
	b := make([]byte, 4096)
	if !raw {
		for {
			n, from, err := syscall.Recvfrom(fd, b, 0)
			if err != nil {
				return err
			}
			if n >= 12 {
				nxdomain(b)
				_ = syscall.Sendto(fd, b[:n], 0, from)
			}
		}
	}
	var from [syscall.SizeofSockaddrInet6]byte
	for {
		fl := uint32(len(from))
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])),
			uintptr(len(b)), 0, uintptr(unsafe.Pointer(&from[0])), uintptr(unsafe.Pointer(&fl)))
		if e != 0 {
			return e
		}
		if n >= 12 {
			nxdomain(b)
			_, _, _ = syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), n, 0,
				uintptr(unsafe.Pointer(&from[0])), uintptr(fl))
		}
	}
}
