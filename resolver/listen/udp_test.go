package listen_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/listen"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// rawExchange sends b to addr over UDP and returns the reply, or nil if none came within wait.
func rawExchange(t *testing.T, addr string, b []byte, wait time.Duration) *dns.Msg {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("reply does not unpack: %v", err)
	}
	return m
}

// TestUDPServerMalformed: what the UDP server does with packets the chain never sees, as
// miekg's server did: FORMERR for a query whose body does not unpack, nothing for responses,
// short or oversized packets; each unparseable one is reported to OnInvalid.
func TestUDPServerMalformed(t *testing.T) { readModes(t, listen.Options{}, testUDPServerMalformed) }

func testUDPServerMalformed(t *testing.T, opts listen.Options) {
	ts := resolvertest.Serve(t, resolvertest.Answers(1), opts)
	q, err := resolvertest.Query("ok.example", dns.TypeA, false).Pack()
	if err != nil {
		t.Fatal(err)
	}
	cut := append([]byte(nil), q[:len(q)-3]...) // the question ends early
	response := append([]byte(nil), q...)
	response[2] |= 0x80
	huge := append(append([]byte(nil), q...), make([]byte, 5000)...)

	if r := rawExchange(t, ts.Addr, cut, 2*time.Second); r == nil || r.Rcode != dns.RcodeFormatError || r.Id != uint16(cut[0])<<8|uint16(cut[1]) {
		t.Errorf("cut query: reply %v, want FORMERR with its ID", r)
	}
	if ts.Invalid.Load() != 1 {
		t.Errorf("invalid = %d after a cut query, want 1", ts.Invalid.Load())
	}
	for _, tc := range []struct {
		name    string
		b       []byte
		invalid int64
	}{
		{"response", response, 0},
		{"short", q[:7], 1},
		{"oversized", huge, 1},
	} {
		before := ts.Invalid.Load()
		if r := rawExchange(t, ts.Addr, tc.b, 200*time.Millisecond); r != nil {
			t.Errorf("%s: got a reply %v", tc.name, r)
		}
		// The server is still serving, and has dealt with the packet before this query's reply.
		if r := rawExchange(t, ts.Addr, q, 5*time.Second); r == nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s: a good query after it got %v", tc.name, r)
		}
		if got := ts.Invalid.Load() - before; got != tc.invalid {
			t.Errorf("%s: invalid counted %d times, want %d", tc.name, got, tc.invalid)
		}
	}
}

// TestUDPServerWildcard: on a wildcard address each reply comes from the address its query was
// sent to (a connected client socket drops anything else).
func TestUDPServerWildcard(t *testing.T) { readModes(t, listen.Options{}, testUDPServerWildcard) }

func testUDPServerWildcard(t *testing.T, opts listen.Options) {
	for _, tc := range []struct{ listen, query string }{
		{"0.0.0.0:0", "127.0.0.2"}, // not the address the kernel would pick for a reply to 127.0.0.1
		{"[::]:0", "::1"},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			h := &resolver.Handler{Resolver: resolvertest.Answers(1)}
			s, err := listen.Plain(tc.listen, h, opts)
			if err != nil {
				t.Skipf("cannot listen on %s: %v", tc.listen, err)
			}
			t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
			_, port, _ := net.SplitHostPort(s.Addr())
			c, err := net.Dial("udp", net.JoinHostPort(tc.query, port))
			if err != nil {
				t.Skipf("no %s: %v", tc.query, err)
			}
			c.Close()
			r := resolvertest.Exchange(t, "udp", net.JoinHostPort(tc.query, port), resolvertest.Query("w.example", dns.TypeA, false))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Errorf("reply %v", r)
			}
		})
	}
}

// TestUDPServerConcurrent: queries held by the chain at the same time are each answered, with
// their own ID and question, by separate workers (for -race).
func TestUDPServerConcurrent(t *testing.T) { readModes(t, listen.Options{}, testUDPServerConcurrent) }

func testUDPServerConcurrent(t *testing.T, opts listen.Options) {
	const n = 50
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	ts := resolvertest.Serve(t, resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
		resolver.WillWait(ctx)
		arrived.Done()
		<-release
		return resolvertest.Answers(1).Resolve(ctx, req)
	}), opts)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("q%d.example.", i)
			r := resolvertest.Exchange(t, "udp", ts.Addr, resolvertest.Query(name, dns.TypeA, false))
			if r.Question[0].Name != name || len(r.Answer) != 1 || r.Answer[0].Header().Name != name {
				t.Errorf("asked %s, got %v", name, r)
			}
		})
	}
	arrived.Wait() // all n are in the chain at once
	close(release)
	wg.Wait()
}

// TestUDPServerShutdownDrains: a query being answered when Shutdown is called still gets its
// reply; Shutdown returns after it, and the socket is closed.
func TestUDPServerShutdownDrains(t *testing.T) {
	readModes(t, listen.Options{}, testUDPServerShutdownDrains)
}

func testUDPServerShutdownDrains(t *testing.T, opts listen.Options) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	h := &resolver.Handler{Resolver: resolvertest.Blocking(entered, release), Timeout: 5 * time.Second}
	s, err := listen.Plain("127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	answer := make(chan *dns.Msg, 1)
	go func() {
		c := &dns.Client{Timeout: 5 * time.Second}
		r, _, _ := c.Exchange(resolvertest.Query("held.example", dns.TypeA, false), s.Addr())
		answer <- r
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- s.Shutdown(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) with a query in flight", err)
	case r := <-answer:
		t.Fatalf("held query answered before its release: %v", r)
	case <-time.After(50 * time.Millisecond): // not a timing assertion: either order is checked below
	}
	close(release)
	if r := <-answer; r == nil || r.Rcode != dns.RcodeSuccess {
		t.Errorf("held query got %v", r)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	if r, _, err := c.Exchange(resolvertest.Query("late.example", dns.TypeA, false), s.Addr()); err == nil {
		t.Errorf("a query after Shutdown was answered: %v", r)
	}
}

// TestUDPServerBurst: queries sent back to back from one socket, without waiting, are read and
// answered in batches; each gets exactly one reply with its own ID and question.
func TestUDPServerBurst(t *testing.T) { readModes(t, listen.Options{}, testUDPServerBurst) }

func testUDPServerBurst(t *testing.T, opts listen.Options) {
	ts := resolvertest.Serve(t, resolvertest.Answers(1), opts)
	c, err := net.Dial("udp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 100 // well within the default socket buffers (208 KiB) at both ends
	for i := range n {
		q := resolvertest.Query(fmt.Sprintf("q%d.example.", i), dns.TypeA, false)
		q.Id = uint16(i)
		b, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint16]bool{}
	buf := make([]byte, 1232)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(seen) < n {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%d replies of %d: %v", len(seen), n, err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:k]); err != nil {
			t.Fatal(err)
		}
		if seen[r.Id] || r.Question[0].Name != fmt.Sprintf("q%d.example.", r.Id) {
			t.Fatalf("reply %d for %s (duplicate: %v)", r.Id, r.Question[0].Name, seen[r.Id])
		}
		seen[r.Id] = true
	}
}

// TestUDPServerSockets: with several sockets on one address, clients (spread by the kernel
// over the sockets by their source port) are all answered, and Shutdown stops every socket.
func TestUDPServerSockets(t *testing.T) {
	readModes(t, listen.Options{UDPSockets: 4}, testUDPServerSockets)
}

func testUDPServerSockets(t *testing.T, opts listen.Options) {
	h := &resolver.Handler{Resolver: resolvertest.Answers(1)}
	s, err := listen.Plain("127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 32 { // each exchange from its own socket, so its own source port
		wg.Go(func() {
			name := fmt.Sprintf("c%d.example.", i)
			r := resolvertest.Exchange(t, "udp", s.Addr(), resolvertest.Query(name, dns.TypeA, false))
			if r.Question[0].Name != name {
				t.Errorf("asked %s, got %v", name, r)
			}
		})
	}
	wg.Wait()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Every socket is closed: the port can be bound again without SO_REUSEPORT.
	pc, err := net.ListenPacket("udp", s.Addr())
	if err != nil {
		t.Fatalf("after Shutdown: %v", err)
	}
	pc.Close()
}

// readModes runs f with opts as given (reads through the runtime's poller) and, where supported,
// with blocking reads, for which it raises GOMAXPROCS by the sockets' number until f's cleanups
// have run (as dnsfence does; see Options.BlockingReads).
func readModes(t *testing.T, opts listen.Options, f func(*testing.T, listen.Options)) {
	t.Run("poll", func(t *testing.T) { f(t, opts) })
	t.Run("blocking", func(t *testing.T) {
		if !listen.BlockingReadsSupported {
			t.Skip("blocking reads need Linux")
		}
		opts := opts
		opts.BlockingReads = true
		if opts.UDPSockets == 0 {
			opts.UDPSockets = runtime.GOMAXPROCS(0)
		}
		prev := runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + opts.UDPSockets)
		t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
		f(t, opts)
	})
}

// TestBlockingReadsNeedSpareProcs: Plain refuses blocking reads when its readers would hold every
// P (GOMAXPROCS not raised first, see Options.BlockingReads).
func TestBlockingReadsNeedSpareProcs(t *testing.T) {
	if !listen.BlockingReadsSupported {
		t.Skip("blocking reads need Linux")
	}
	h := &resolver.Handler{Resolver: resolvertest.Answers(1)}
	n := runtime.GOMAXPROCS(0)
	s, err := listen.Plain("127.0.0.1:0", h, listen.Options{BlockingReads: true, UDPSockets: n})
	if err == nil {
		_ = s.Shutdown(context.Background())
		t.Fatalf("Plain started %d blocking readers with GOMAXPROCS %d", n, n)
	}
	if !strings.Contains(err.Error(), "GOMAXPROCS") {
		t.Errorf("error %q does not say what to raise", err)
	}
}
