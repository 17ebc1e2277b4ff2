// Package listen accepts queries from clients and hands them to a dns.Handler (resolver.Handler):
// plain DNS on UDP (batched recvmmsg/sendmmsg, SO_REUSEPORT sockets, long-lived workers; on
// Linux, blocking reads answered by the reading goroutine: Options.BlockingReads) and TCP,
// DNS over TLS and DNS over HTTPS, with certificate files reloaded as they change.
//
// It owns sockets and wire formats only: it must not look at what a query asks or decide how it is
// answered, and it never uses miekg's DefaultServeMux.
package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/netutil"

	"github.com/dnsfence/dnsfence/resolver"
)

// Options configure a Server.
type Options struct {
	// TCPIdleTimeout closes a TCP connection that sends no query for this long; zero means 10s.
	TCPIdleTimeout time.Duration
	// MaxTCPQueries closes a TCP connection after this many queries; zero means unlimited.
	MaxTCPQueries int
	// MaxTCPConns bounds open TCP client connections; more wait in the kernel's accept queue.
	// Zero means unlimited.
	MaxTCPConns int
	// OnInvalid, if set, is called for each packet that cannot be parsed (miekg answers FORMERR).
	OnInvalid func(m []byte, err error)
	// UDPSockets is how many UDP sockets share the address (SO_REUSEPORT, Linux only), each with
	// its own reader and workers; the kernel spreads clients over them. Zero means one per
	// GOMAXPROCS.
	UDPSockets int
	// BlockingReads reads each UDP socket with blocking system calls that keep their P (Linux
	// only; elsewhere it is ignored) instead of through the runtime's poller, and answers blocked
	// and cached names on the reading thread: a query then costs one thread wake-up and two
	// system calls, about half the CPU of the poller's path at a few thousand queries a second
	// (scripts/bench-wake.sh). Each UDP socket then holds a P whenever it waits, so the caller
	// must raise GOMAXPROCS by UDPSockets for each address first, or the rest of the program
	// (upstream replies, timers, the collector) may get none.
	BlockingReads bool
}

// blockingReadTimeout is how long a blocking read waits holding its P (see udpIO.read): the
// socket's receive timeout, which also lets signals interrupt the read (see mmsg.Detach). After
// that much silence the reader sleeps without a P until the next query.
const blockingReadTimeout = 50 * time.Millisecond

// BlockingReadsSupported says whether Options.BlockingReads has an effect here (Linux).
const BlockingReadsSupported = blockingSupported

// Server is one listening address serving DNS: UDP+TCP, DoT or DoH.
type Server struct {
	addr     string
	shutdown []func(context.Context) error
}

// Plain binds addr ("host:port") for UDP and TCP and starts serving h on both. It returns once both
// listeners accept queries, so bind errors (port in use, permission for port 53) surface here. With
// port 0, both transports get the same random port.
func Plain(addr string, h dns.Handler, opts Options) (*Server, error) {
	n := opts.UDPSockets
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if !reusePortSupported {
		n = 1
	}
	blocking := opts.BlockingReads && blockingSupported
	if procs := runtime.GOMAXPROCS(0); blocking && procs <= n {
		// Every P would be held by a waiting reader: the rest would run only when the runtime
		// preempts one, every 10 ms.
		return nil, fmt.Errorf("serve %s: blocking reads on %d UDP sockets need GOMAXPROCS above %d (it is %d)", addr, n, n, procs)
	}
	pcs, ln, err := listenBoth(addr, n)
	if err != nil {
		return nil, err
	}
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
		ln.Close()
	}
	var udps []*udpServer
	for _, pc := range pcs {
		var readTimeout time.Duration
		if blocking {
			readTimeout = blockingReadTimeout
		}
		udp, err := newUDPServer(pc.(*net.UDPConn), h, opts.OnInvalid, readTimeout)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("serve %s: %w", addr, err)
		}
		udps = append(udps, udp)
	}
	tcp := tcpServer(limit(ln, opts), h, opts)
	if err := start(tcp); err != nil {
		closeAll()
		return nil, fmt.Errorf("serve %s: %w", addr, err)
	}
	s := &Server{addr: pcs[0].LocalAddr().String()}
	for _, udp := range udps {
		go func() { _ = udp.serve() }()
		s.shutdown = append(s.shutdown, udp.shutdown)
	}
	s.shutdown = append(s.shutdown, tcp.ShutdownContext)
	return s, nil
}

// tcpServer is a stream server (TCP or DoT) with the configured timeouts and limits.
func tcpServer(ln net.Listener, h dns.Handler, opts Options) *dns.Server {
	idle := opts.TCPIdleTimeout
	if idle <= 0 {
		idle = 10 * time.Second
	}
	maxq := opts.MaxTCPQueries
	if maxq <= 0 {
		maxq = -1
	}
	return &dns.Server{
		Listener: ln, Handler: h, MsgAcceptFunc: resolver.AcceptMsg, MsgInvalidFunc: opts.OnInvalid,
		// ReadTimeout bounds the first query on a connection, IdleTimeout the wait for later ones.
		ReadTimeout:   idle,
		IdleTimeout:   func() time.Duration { return idle },
		MaxTCPQueries: maxq,
	}
}

func limit(ln net.Listener, opts Options) net.Listener {
	if opts.MaxTCPConns > 0 {
		return netutil.LimitListener(ln, opts.MaxTCPConns)
	}
	return ln
}

// start serves srv and returns once it accepts queries.
func start(srv *dns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
		return nil
	case err := <-errc:
		return err
	}
}

// listenBoth binds n UDP sockets (n > 1: with SO_REUSEPORT) and a TCP listener on addr.
func listenBoth(addr string, n int) ([]net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	var lc net.ListenConfig
	if n > 1 {
		lc.Control = setReusePort
	}
	var errs []error
	for range 20 {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp: %w", err)
		}
		bound := net.JoinHostPort(host, fmt.Sprint(pc.LocalAddr().(*net.UDPAddr).Port))
		ln, err := net.Listen("tcp", bound)
		if err != nil {
			pc.Close()
			if port != "0" {
				return nil, nil, fmt.Errorf("listen tcp: %w", err)
			}
			errs = append(errs, err)
			continue
		}
		pcs := []net.PacketConn{pc}
		for len(pcs) < n {
			more, err := lc.ListenPacket(context.Background(), "udp", bound)
			if err != nil {
				for _, pc := range pcs {
					pc.Close()
				}
				ln.Close()
				return nil, nil, fmt.Errorf("listen udp (socket %d of %d): %w", len(pcs)+1, n, err)
			}
			pcs = append(pcs, more)
		}
		return pcs, ln, nil
	}
	return nil, nil, fmt.Errorf("listen %s: no port free for both udp and tcp: %w", addr, errors.Join(errs...))
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.addr }

// Shutdown stops accepting queries and waits, until ctx is done, for the ones in flight to be answered.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range s.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
