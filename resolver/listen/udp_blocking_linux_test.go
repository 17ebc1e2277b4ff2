package listen

import (
	"context"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// serveBlocking serves h on a loopback socket read with blocking reads of the given timeout,
// with a P to spare for the rest of the test binary, and shuts it down when the test ends.
func serveBlocking(t *testing.T, h dns.Handler, readTimeout time.Duration) (*udpServer, string) {
	t.Helper()
	prev := runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	s, err := newUDPServer(pc, h, nil, readTimeout)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = s.serve(); close(served) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.shutdown(ctx)
		<-served
	})
	return s, addr
}

// inChild runs the calling test again in a child process and reports its result, returning
// false; in the child it returns true, and the test goes on. A collection that cannot stop a
// reader stops the whole process (every goroutine waits for the stop-the-world, timers too), so
// only a parent can tell it failed, by the child's deadline.
func inChild(t *testing.T) bool {
	t.Helper()
	if os.Getenv("LISTEN_TEST_CHILD") == t.Name() {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "LISTEN_TEST_CHILD="+t.Name())
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the test did not finish within a minute (a collection waiting for a reader stops everything):\n%s", out)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%v:\n%s", err, out)
	}
	return false
}

// within fails the test unless f returns within d (it is left running if not).
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v", what, d)
	}
}

// TestBlockingReadLetsTheCollectorRun: a reader waiting in its raw system call holds its P; a
// stop-the-world must still get it to stop (the preemption signal interrupts the read, which the
// receive timeout makes possible) long before the read's own timeout. Without that, a collection
// on an idle server would wait for the next packet.
func TestBlockingReadLetsTheCollectorRun(t *testing.T) {
	if !inChild(t) {
		return
	}
	s, addr := serveBlocking(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		_ = w.WriteMsg(new(dns.Msg).SetReply(r))
	}), time.Hour)
	if _, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(new(dns.Msg).SetQuestion("a.example.", dns.TypeA), addr); err != nil {
		t.Fatal(err) // the reader is running and now waits for the next packet
	}
	for range 3 {
		within(t, 20*time.Second, "runtime.GC with the reader waiting", runtime.GC)
	}
	// Shutdown wakes the waiting reader too (shutdown(SHUT_RD)), not its timeout.
	within(t, 20*time.Second, "shutdown with the reader waiting", func() { _ = s.shutdown(context.Background()) })
}

// TestBlockingReadHandsOn: a query that is about to wait tells its writer (resolver.WillWait),
// and the reader hands the socket, with the rest of the batch it read, to another worker: the
// queries sent after it, and those read with it, are answered while it waits.
func TestBlockingReadHandsOn(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	_, addr := serveBlocking(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Question[0].Name == "slow.example." {
			w.(interface{ WillWait() }).WillWait()
			entered <- struct{}{}
			<-release
		}
		_ = w.WriteMsg(new(dns.Msg).SetReply(r))
	}), time.Second)
	defer close(release) // before the server's shutdown, which waits for the held query
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(id uint16, name string) {
		q := new(dns.Msg).SetQuestion(name, dns.TypeA)
		q.Id = id
		b, _ := q.Pack()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	read := func() *dns.Msg {
		buf := make([]byte, 512)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Back to back, so that the kernel likely queues them for one batch behind the slow one.
	send(1, "slow.example.")
	for i := range uint16(5) {
		send(2+i, "fast.example.")
	}
	<-entered
	seen := map[uint16]bool{}
	for range 5 {
		r := read()
		if r.Question[0].Name != "fast.example." || seen[r.Id] {
			t.Fatalf("reply %d for %s while slow.example waits", r.Id, r.Question[0].Name)
		}
		seen[r.Id] = true
	}
	send(10, "later.example.") // read by the new leader
	if r := read(); r.Id != 10 {
		t.Fatalf("reply %d, want the later query's", r.Id)
	}
	release <- struct{}{}
	if r := read(); r.Id != 1 || r.Question[0].Name != "slow.example." {
		t.Fatalf("reply %v, want slow.example's", r)
	}
}

// TestBlockingReadSleepsWhenIdle: after readTimeout without packets the reader waits in an
// ordinary system call, without a P and without a timeout (so an idle server is idle), and the
// next packet wakes it back into its raw reads; the collector runs in either state.
func TestBlockingReadSleepsWhenIdle(t *testing.T) {
	if !inChild(t) {
		return
	}
	s, addr := serveBlocking(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		_ = w.WriteMsg(new(dns.Msg).SetReply(r))
	}), 20*time.Millisecond)
	c := &dns.Client{Timeout: 5 * time.Second}
	for i := range 3 {
		if _, _, err := c.Exchange(new(dns.Msg).SetQuestion("a.example.", dns.TypeA), addr); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		within(t, 20*time.Second, "runtime.GC", runtime.GC)
		deadline := time.Now().Add(10 * time.Second)
		for !s.io.asleep.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the reader did not go to sleep after 10 s without packets")
			}
			time.Sleep(10 * time.Millisecond)
		}
		within(t, 20*time.Second, "runtime.GC with the reader asleep", runtime.GC)
	}
}
