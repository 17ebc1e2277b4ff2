package mmsg

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loopSocket returns a UDP socket on loopback, a sender connected to it and a recv Call over n
// headers pointing at buffers of 64 bytes.
func loopSocket(t *testing.T, n int) (*net.UDPConn, *net.UDPConn, *Call, [][]byte) {
	t.Helper()
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	sc, err := net.DialUDP("udp4", nil, rc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	raw, err := rc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	hdrs, iovs, bufs := make([]unix.Mmsghdr, n), make([]unix.Iovec, n), make([][]byte, n)
	for i := range hdrs {
		bufs[i] = make([]byte, 64)
		SetMsghdr(&hdrs[i].Hdr, &iovs[i], nil, 0, bufs[i], nil)
	}
	return rc, sc, NewRecv(raw, hdrs), bufs
}

// A datagram that arrives after a short batch, before the loop waits, is still read: the wait
// must not lose the readiness it raised. Each wake costs one system call, not two.
func TestLoopReadsWhatArrivesBeforeTheWait(t *testing.T) {
	_, sc, c, bufs := loopSocket(t, 4)
	send := func(p string) {
		if _, err := sc.Write([]byte(p)); err != nil {
			t.Error(err)
		}
	}
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- c.Loop(4, func(n int) bool {
			for i := range n {
				got = append(got, string(bufs[i][:lenOf(c, i)]))
			}
			switch len(got) {
			case 1:
				send("b") // after the read that returned a, before the wait
			case 2:
				go func() { time.Sleep(20 * time.Millisecond); send("c") }() // after the wait began
			case 3:
				return false
			}
			return true
		})
	}()
	time.Sleep(20 * time.Millisecond) // the loop waits on an empty socket
	send("a")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("loop stuck after reading %q: a datagram's readiness was lost", got)
	}
	if want := []string{"a", "b", "c"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("read %q, want %q", got, want)
	}
	// One read finding the empty socket at the start, then one per datagram: a read per batch
	// followed by one that finds nothing would make 6 or 7.
	if c.calls > 4 {
		t.Errorf("%d recvmmsg calls for 3 datagrams arriving one by one, want at most 4", c.calls)
	}
}

// A full batch is read again at once; the datagrams queued beyond it come in the next batch.
func TestLoopFullBatch(t *testing.T) {
	_, sc, c, _ := loopSocket(t, 2)
	for range 5 {
		if _, err := sc.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	var batches []int
	total := 0
	err := c.Loop(2, func(n int) bool {
		batches = append(batches, n)
		total += n
		return total < 5
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != 3 || batches[0] != 2 || batches[1] != 2 || batches[2] != 1 {
		t.Fatalf("batches %v, want [2 2 1]", batches)
	}
}

// Closing the socket ends a waiting loop with net.ErrClosed; an ICMP error on a connected socket
// is returned, not waited on.
func TestLoopErrors(t *testing.T) {
	rc, _, c, _ := loopSocket(t, 2)
	done := make(chan error, 1)
	go func() { done <- c.Loop(2, func(int) bool { return true }) }()
	time.Sleep(10 * time.Millisecond)
	rc.Close()
	wantErr(t, done, net.ErrClosed, "after close")

	// A port with nothing behind it: the kernel answers the write with port unreachable.
	dead, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.LocalAddr().(*net.UDPAddr)
	dead.Close()
	cc, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	raw, _ := cc.SyscallConn()
	hdrs, iovs := make([]unix.Mmsghdr, 1), make([]unix.Iovec, 1)
	SetMsghdr(&hdrs[0].Hdr, &iovs[0], nil, 0, make([]byte, 64), nil)
	rcv := NewRecv(raw, hdrs)
	if _, err := cc.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	go func() { done <- rcv.Loop(1, func(int) bool { return true }) }()
	wantErr(t, done, syscall.ECONNREFUSED, "on a refused socket")
}

// wantErr waits for a Loop's error on done and checks that it is want.
func wantErr(t *testing.T, done <-chan error, want error, when string) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, want) {
			t.Fatalf("loop %s: %v, want %v", when, err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("loop %s: still running, want %v", when, want)
	}
}

// lenOf is the length of the datagram in header i of c.
func lenOf(c *Call, i int) uint32 {
	return unsafe.Slice(c.hdr, i+1)[i].Len
}
