package mmsg

import (
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDetachWaitSleep: a detached socket is blocking with the receive timeout set; Wait and Sleep
// read what arrives, Wait reports the timeout, and SendTo answers on it.
func TestDetachWaitSleep(t *testing.T) {
	prev := runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1) // Wait holds a P
	defer runtime.GOMAXPROCS(prev)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().(*net.UDPAddr)
	// Shorter than the 10 ms after which the runtime interrupts a goroutine that holds its P,
	// which would otherwise restart the wait before the timeout expires.
	fd, err := Detach(conn, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
		t.Fatalf("flags %#x (%v): still non-blocking", fl, err)
	}
	if _, err := conn.Write([]byte("x")); err == nil {
		t.Error("conn still usable after Detach")
	}
	client, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	hdrs, iovs := make([]unix.Mmsghdr, 4), make([]unix.Iovec, 4)
	names := make([]unix.RawSockaddrInet6, 4)
	bufs := make([][]byte, 4)
	for i := range hdrs {
		bufs[i] = make([]byte, 64)
		SetMsghdr(&hdrs[i].Hdr, &iovs[i], &names[i], unix.SizeofSockaddrInet6, bufs[i], nil)
	}
	recv := NewRecv(nil, hdrs)
	start := time.Now()
	if n, err := recv.Wait(fd, 4); n != 0 || !errors.Is(err, ErrTimeout) {
		// A signal may end the wait early (n 0, no error); then the timeout comes on a later call.
		for err == nil && n == 0 && time.Since(start) < 5*time.Second {
			n, err = recv.Wait(fd, 4)
		}
		if n != 0 || !errors.Is(err, ErrTimeout) {
			t.Fatalf("Wait on an empty socket: %d, %v; want ErrTimeout", n, err)
		}
	}
	for _, read := range []func(int, int) (int, error){recv.Wait, recv.Sleep} {
		if _, err := client.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		n, err := read(fd, 4)
		for err == nil && n == 0 { // interrupted by a signal
			n, err = read(fd, 4)
		}
		if n != 1 || string(bufs[0][:hdrs[0].Len]) != "ping" {
			t.Fatalf("read %d datagrams (%v), first %q", n, err, bufs[0][:hdrs[0].Len])
		}
		for i := range hdrs { // the kernel shortened the lengths: point them at the buffers again
			SetMsghdr(&hdrs[i].Hdr, &iovs[i], &names[i], unix.SizeofSockaddrInet6, bufs[i], nil)
		}
	}
	// Reply to the sender with SendTo, from the address recvmmsg gave.
	shdr, siov := make([]unix.Mmsghdr, 1), make([]unix.Iovec, 1)
	SetMsghdr(&shdr[0].Hdr, &siov[0], &names[0], unix.SizeofSockaddrInet4, []byte("pong"), nil)
	if n, err := NewSend(nil, shdr).SendTo(fd, 1); n != 1 || err != nil {
		t.Fatalf("SendTo: %d, %v", n, err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 16)
	if n, err := client.Read(b); err != nil || string(b[:n]) != "pong" {
		t.Fatalf("client read %q, %v", b[:n], err)
	}
}
