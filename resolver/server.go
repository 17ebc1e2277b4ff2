package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// TCPIdleTimeout closes a TCP connection that sends no query for this long; zero means 10s.
	TCPIdleTimeout time.Duration
	// MaxTCPQueries closes a TCP connection after this many queries; zero means unlimited.
	MaxTCPQueries int
	// MaxTCPConns bounds open TCP client connections; more wait in the kernel's accept queue.
	// Zero means unlimited.
	MaxTCPConns int
	// OnInvalid, if set, is called for each packet that cannot be parsed (miekg answers FORMERR).
	OnInvalid func(m []byte, err error)
}

// Server serves DNS over UDP and TCP on one address.
type Server struct {
	udp, tcp *dns.Server
	pc       net.PacketConn
	ln       net.Listener
}

// Listen binds addr ("host:port") for UDP and TCP and starts serving h on both. It returns once both
// listeners accept queries, so bind errors (port in use, permission for port 53) surface here. With
// port 0, both transports get the same random port.
func Listen(addr string, h dns.Handler, opts ServerOptions) (*Server, error) {
	pc, ln, err := listenBoth(addr)
	if err != nil {
		return nil, err
	}
	idle := opts.TCPIdleTimeout
	if idle <= 0 {
		idle = 10 * time.Second
	}
	maxq := opts.MaxTCPQueries
	if maxq <= 0 {
		maxq = -1
	}
	if opts.MaxTCPConns > 0 {
		ln = netutil.LimitListener(ln, opts.MaxTCPConns)
	}
	s := &Server{pc: pc, ln: ln}
	s.udp = &dns.Server{PacketConn: pc, Handler: h, MsgAcceptFunc: AcceptMsg}
	s.tcp = &dns.Server{
		Listener: ln, Handler: h, MsgAcceptFunc: AcceptMsg,
		// ReadTimeout bounds the first query on a connection, IdleTimeout the wait for later ones.
		ReadTimeout:   idle,
		IdleTimeout:   func() time.Duration { return idle },
		MaxTCPQueries: maxq,
	}
	if opts.OnInvalid != nil {
		s.udp.MsgInvalidFunc = opts.OnInvalid
		s.tcp.MsgInvalidFunc = opts.OnInvalid
	}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		errc := make(chan error, 1)
		go func() { errc <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-errc:
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("serve %s: %w", addr, err)
		}
	}
	return s, nil
}

func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	var errs []error
	for range 20 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp: %w", err)
		}
		tcpAddr := addr
		if port == "0" {
			tcpAddr = net.JoinHostPort(host, fmt.Sprint(pc.LocalAddr().(*net.UDPAddr).Port))
		}
		ln, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" {
			return nil, nil, fmt.Errorf("listen tcp: %w", err)
		}
		errs = append(errs, err)
	}
	return nil, nil, fmt.Errorf("listen %s: no port free for both udp and tcp: %w", addr, errors.Join(errs...))
}

// Addr is the bound address (UDP and TCP share it).
func (s *Server) Addr() string { return s.pc.LocalAddr().String() }

// Shutdown stops accepting queries and waits, until ctx is done, for the ones in flight to be answered.
func (s *Server) Shutdown(ctx context.Context) error {
	return errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
}
