// Package upstream is dnsfence's side of the wire towards upstream resolvers: the clients
// (plain UDP with TCP fallback over pooled sockets, TCP, DNS over TLS, DNS over HTTPS), parsed from
// URLs by Parse, host names resolved through bootstrap servers, and Forward, the terminal stage of
// the chain, with failover, health and per-upstream in-flight limits.
//
// Every reply is checked against its query (ID, question) before it is used. It must not decide
// anything about policy (what to block, cache or log): that is the stages' job in package resolver.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
)

// Upstream sends one query to one upstream resolver. Exchange must not modify m, must give the
// exchange a fresh random ID, and must return only a reply whose ID and question match m.
// Implementations must be safe for concurrent use.
type Upstream interface {
	Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error)
	// Address names the upstream in logs and metric labels (e.g. "udp://192.0.2.1:53").
	Address() string
}

// ErrMismatch is the error for a reply whose ID or question does not match the query.
var ErrMismatch = errors.New("reply does not match the query")

// ErrorReason classifies an exchange error into a short, bounded metric label.
func ErrorReason(err error) string {
	var rerr *resolver.RcodeError
	var nerr net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &rerr):
		return strings.ToLower(dns.RcodeToString[rerr.Rcode])
	case errors.Is(err, ErrMismatch):
		return "mismatch"
	case errors.Is(err, ErrUpstreamBusy):
		return "busy"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	case errors.As(err, &nerr):
		return "network"
	}
	return "other"
}

// Options configure the upstreams Parse builds.
type Options struct {
	// RootCAs verify DoT/DoH servers; nil means the system's roots.
	RootCAs *x509.CertPool
	// Bootstrap are plain-DNS servers (IP:port) that resolve the host names of DoT/DoH upstreams.
	// dnsfence never resolves them through itself (that would loop when it is the system resolver).
	Bootstrap []string
}

// Parse turns an upstream URL into an Upstream:
//   - udp://IP[:port]: UDP, retried over TCP when the reply is truncated; a bare IP[:port] is the same;
//   - tcp://IP[:port]: TCP only;
//   - tls://HOST[:port][?tls_server_name=NAME]: DNS over TLS (port 853), one pipelined connection;
//   - https://HOST[:port]/path: DNS over HTTPS (RFC 8484 POST, HTTP/2).
//
// HOST of tls:// and https:// may be a name, resolved through opts.Bootstrap; the certificate is
// checked against tls_server_name if given, else HOST.
func Parse(s string, opts Options) (Upstream, error) {
	scheme, rest, found := strings.Cut(s, "://")
	if !found {
		if err := schemeTypo(s); err != nil {
			return nil, err
		}
		scheme, rest = "udp", s
	}
	switch scheme {
	case "udp", "tcp":
		ap, err := parseHostPort(rest, 53)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", s, err)
		}
		return newPlainUpstream(ap.String(), scheme+"://"+ap.String(), scheme == "tcp"), nil
	case "tls", "https":
		return parseEncrypted(s, scheme, opts)
	}
	return nil, fmt.Errorf("upstream %q: unsupported scheme %q (want udp://, tcp://, tls:// or https://)", s, scheme)
}

func parseEncrypted(s, scheme string, opts Options) (Upstream, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", s, err)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return nil, fmt.Errorf("upstream %q: no host", s)
	}
	if port == "" {
		port = map[string]string{"tls": "853", "https": "443"}[scheme]
	}
	serverName := host
	if n := u.Query().Get("tls_server_name"); n != "" {
		serverName = n
	}
	hr, err := newHostResolver(host, port, opts.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", s, err)
	}
	tlsCfg := &tls.Config{ServerName: serverName, RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
	if scheme == "tls" {
		name := "tls://" + net.JoinHostPort(host, port)
		return &dotUpstream{name: name, resolve: hr, tls: tlsCfg}, nil
	}
	if u.Path == "" {
		u.Path = "/dns-query"
	}
	u.RawQuery = ""
	return newDoHUpstream(u.String(), hr, tlsCfg), nil
}

// hostResolver gives the address to dial for an upstream host: the IP itself, or the host name
// resolved through the bootstrap servers, cached until a dial fails.
type hostResolver struct {
	host, port string
	bootstrap  []string
	ip         netip.Addr // set for IP hosts

	mu     sync.Mutex
	cached string
}

func newHostResolver(host, port string, bootstrap []string) (*hostResolver, error) {
	hr := &hostResolver{host: host, port: port, bootstrap: bootstrap}
	if ip, err := netip.ParseAddr(host); err == nil {
		hr.ip = ip
		return hr, nil
	}
	if len(bootstrap) == 0 {
		return nil, fmt.Errorf("host name %q needs bootstrap servers to resolve it (or use its IP with ?tls_server_name=%s)", host, host)
	}
	return hr, nil
}

// addr returns "ip:port" to dial.
func (h *hostResolver) addr(ctx context.Context) (string, error) {
	if h.ip.IsValid() {
		return net.JoinHostPort(h.ip.String(), h.port), nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cached != "" {
		return h.cached, nil
	}
	var errs []error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		for _, b := range h.bootstrap {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(h.host), qtype)
			c := &dns.Client{Timeout: 2 * time.Second}
			r, _, err := c.ExchangeContext(ctx, m, b)
			if err != nil {
				errs = append(errs, fmt.Errorf("bootstrap %s: %w", b, err))
				continue
			}
			for _, rr := range r.Answer {
				switch rr := rr.(type) {
				case *dns.A:
					h.cached = net.JoinHostPort(rr.A.String(), h.port)
				case *dns.AAAA:
					h.cached = net.JoinHostPort(rr.AAAA.String(), h.port)
				}
				if h.cached != "" {
					return h.cached, nil
				}
			}
		}
	}
	return "", fmt.Errorf("resolve %s: %w", h.host, errors.Join(append(errs, errors.New("no address"))...))
}

// forget drops the cached address so the next dial resolves the name again.
func (h *hostResolver) forget() {
	h.mu.Lock()
	h.cached = ""
	h.mu.Unlock()
}

// parseHostPort accepts "ip", "ip:port", "[ipv6]:port" and a bare IPv6 address.
func parseHostPort(s string, defPort uint16) (netip.AddrPort, error) {
	host, port := strings.Trim(s, "[]"), ""
	if _, err := netip.ParseAddr(host); err != nil {
		if h, p, err := net.SplitHostPort(s); err == nil {
			host, port = h, p
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address: plain udp:// and tcp:// upstreams need one; "+
			"for a host name use DNS over TLS or HTTPS, e.g. tls://%s (resolved through bootstrap servers)", host, host)
	}
	if port == "" {
		return netip.AddrPortFrom(ip, defPort), nil
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", port)
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// plainUpstream speaks classic DNS over UDP and/or TCP. UDP queries share one socket at a time
// (see udpMux), each with a fresh random ID; TCP connections are pooled (see connPool).
type plainUpstream struct {
	addr    string
	name    string
	tcpOnly bool
	udp     *udpMux
	tcp     *connPool
}

func newPlainUpstream(addr, name string, tcpOnly bool) *plainUpstream {
	return &plainUpstream{addr: addr, name: name, tcpOnly: tcpOnly, udp: newUDPMux(addr), tcp: newTCPPool(addr)}
}

var _ Upstream = (*plainUpstream)(nil)

func (u *plainUpstream) Address() string { return u.name }

// Close closes the idle pooled connections; exchanges still running close theirs when done.
func (u *plainUpstream) Close() error {
	u.udp.close()
	u.tcp.close()
	return nil
}

// errTruncatedRead is a UDP reply larger than our read buffer: like TC, the answer is fetched
// over TCP.
var errTruncatedRead = errors.New("udp reply larger than the read buffer")

func (u *plainUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	return u.exchangeBy(ctx, m, time.Time{})
}

// exchangeBy implements deadlineExchanger: the exchange ends by deadline (zero: ctx's only).
func (u *plainUpstream) exchangeBy(ctx context.Context, m *dns.Msg, deadline time.Time) (*dns.Msg, error) {
	if !u.tcpOnly {
		reply, err := u.udp.exchange(ctx, m, deadline)
		if !errors.Is(err, errTruncatedRead) && (err != nil || !reply.Truncated) {
			return reply, err
		}
		// Truncated: the full answer is only available over TCP.
	}
	return u.pooled(ctx, u.tcp, m, deadline)
}

// pooled makes the exchange on a TCP connection from p. A reused connection that fails other
// than by a timeout may just be stale (the server closed it while it was idle), so the query is
// tried once more on a new one.
func (u *plainUpstream) pooled(ctx context.Context, p *connPool, m *dns.Msg, deadline time.Time) (*dns.Msg, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := p.get(ctx)
		if err != nil {
			return nil, err
		}
		reply, clean, err := exchangeOn(ctx, c, m, deadline)
		if clean {
			p.put(c)
		} else {
			_ = c.Close()
		}
		if err != nil && reused && attempt == 0 && ctx.Err() == nil && !isTimeout(err) && !errors.Is(err, errTruncatedRead) {
			continue
		}
		return reply, err
	}
}

// exchangeOn sends m with a fresh ID on the TCP connection c and reads the reply; the stream is
// ours, so a mismatched reply is an error. The exchange ends by deadline or ctx's deadline,
// whichever comes first (a zero deadline: ctx's alone). clean says whether c may be reused.
func exchangeOn(ctx context.Context, c *poolConn, m *dns.Msg, deadline time.Time) (reply *dns.Msg, clean bool, err error) {
	id := dns.Id()
	buf, err := m.PackBuffer(c.wbuf[:cap(c.wbuf)])
	if err != nil {
		return nil, false, fmt.Errorf("pack query: %w", err)
	}
	c.wbuf = buf
	binary.BigEndian.PutUint16(c.wbuf, id)

	d, ctxDeadline := ctx.Deadline()
	if !deadline.IsZero() && (!ctxDeadline || deadline.Before(d)) {
		d = deadline
	}
	_ = c.SetDeadline(d) // zero (none) clears a deadline left from the connection's last use
	if !ctxDeadline {
		// Cancellation without a deadline (shutdown) must unblock the read too. If it fired, the
		// deadline it set may land after ours: the connection is not reused. A context with a
		// deadline (every query the Handler serves) needs no such callback, which would cost
		// allocations on every forwarded query: the socket has the deadline, and such a context
		// is cancelled early only when nobody waits for the answer any more.
		stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() {
				clean = false
			}
		}()
	}
	reply, err = exchangeTCP(c, id, m)
	return reply, err == nil, err
}

// exchangeTCP writes the query in c.wbuf and reads one reply.
func exchangeTCP(c *poolConn, id uint16, m *dns.Msg) (*dns.Msg, error) {
	co := &dns.Conn{Conn: c.Conn}
	if _, err := co.Write(c.wbuf); err != nil {
		return nil, fmt.Errorf("tcp write: %w", err)
	}
	reply, err := co.ReadMsg()
	if err == nil {
		err = checkReply(reply, id, m)
	}
	if err != nil {
		return nil, fmt.Errorf("tcp read: %w", err)
	}
	return reply, nil
}

func isTimeout(err error) bool {
	var nerr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &nerr) && nerr.Timeout()
}

// checkReply accepts only a response to our ID whose question is ours (RFC 5452). A FORMERR without a
// question is accepted as an answer about our query (old servers that reject EDNS send that).
func checkReply(r *dns.Msg, id uint16, q *dns.Msg) error {
	if r.Id != id {
		return fmt.Errorf("%w: id %d, want %d", ErrMismatch, r.Id, id)
	}
	if !r.Response {
		return fmt.Errorf("%w: not a response", ErrMismatch)
	}
	if len(r.Question) == 0 && r.Rcode == dns.RcodeFormatError {
		return nil
	}
	if len(r.Question) != 1 {
		return fmt.Errorf("%w: %d questions", ErrMismatch, len(r.Question))
	}
	got, want := r.Question[0], q.Question[0]
	if got.Qtype != want.Qtype || got.Qclass != want.Qclass || !strings.EqualFold(got.Name, want.Name) {
		return fmt.Errorf("%w: question %s %s, want %s %s", ErrMismatch,
			got.Name, dns.Type(got.Qtype), want.Name, dns.Type(want.Qtype))
	}
	return nil
}
