package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Upstream sends one query to one upstream resolver. Exchange must not modify m, must give the
// exchange a fresh random ID, and must return only a reply whose ID and question match m.
// Implementations must be safe for concurrent use.
type Upstream interface {
	Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error)
	// Address names the upstream in logs and metric labels (e.g. "udp://192.0.2.1:53").
	Address() string
}

// Errors an exchange can fail with, for errors.Is and metric reasons.
var (
	ErrMismatch        = errors.New("reply does not match the query")
	ErrUpstreamRcode   = errors.New("upstream answered with an error rcode")
	ErrUpstreamsFailed = errors.New("no upstream answered")
)

// RcodeError is an upstream reply whose rcode (SERVFAIL, REFUSED, FORMERR) makes us try the next one.
type RcodeError struct{ Rcode int }

func (e *RcodeError) Error() string {
	return fmt.Sprintf("upstream answered %s", dns.RcodeToString[e.Rcode])
}

// Is makes errors.Is(err, ErrUpstreamRcode) true.
func (e *RcodeError) Is(target error) bool { return target == ErrUpstreamRcode }

// ErrorReason classifies an exchange error into a short, bounded metric label.
func ErrorReason(err error) string {
	var rerr *RcodeError
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

// ParseUpstream turns an upstream URL into an Upstream: udp://host[:port] (UDP, retried over TCP when
// the reply is truncated), tcp://host[:port] (TCP only), or a bare host[:port], which means udp://.
// The host must be an IP address: resolving upstream names needs bootstrap resolvers.
func ParseUpstream(s string) (Upstream, error) {
	scheme, hostport, found := strings.Cut(s, "://")
	if !found {
		scheme, hostport = "udp", s
	}
	if scheme != "udp" && scheme != "tcp" {
		return nil, fmt.Errorf("upstream %q: unsupported scheme %q (want udp:// or tcp://)", s, scheme)
	}
	ap, err := parseHostPort(hostport, 53)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", s, err)
	}
	return &plainUpstream{addr: ap.String(), tcpOnly: scheme == "tcp", name: scheme + "://" + ap.String()}, nil
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
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address (upstream host names are not supported yet)", host)
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

// plainUpstream speaks classic DNS over UDP and/or TCP. It opens a fresh socket per exchange: a new
// random source port per query is what makes off-path spoofing hard.
type plainUpstream struct {
	addr    string
	name    string
	tcpOnly bool
	dialer  net.Dialer
}

var _ Upstream = (*plainUpstream)(nil)

func (u *plainUpstream) Address() string { return u.name }

func (u *plainUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	buf, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	if !u.tcpOnly {
		reply, err := u.exchange(ctx, "udp", buf, m)
		if err != nil || !reply.Truncated {
			return reply, err
		}
		// Truncated: the full answer is only available over TCP.
	}
	return u.exchange(ctx, "tcp", buf, m)
}

// exchange sends buf (m packed) with a fresh ID and waits for the matching reply. Over UDP, replies
// with another ID or question are ignored (they may be spoofed or late) and reading goes on until
// the deadline; over TCP the stream is ours, so a mismatch is an error.
func (u *plainUpstream) exchange(ctx context.Context, network string, buf []byte, m *dns.Msg) (*dns.Msg, error) {
	id := dns.Id()
	binary.BigEndian.PutUint16(buf, id)

	conn, err := u.dialer.DialContext(ctx, network, u.addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	// Cancellation without a deadline (shutdown) must unblock the read too.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	co := &dns.Conn{Conn: conn, UDPSize: dns.MaxMsgSize}
	if _, err := co.Write(buf); err != nil {
		return nil, fmt.Errorf("%s write: %w", network, err)
	}
	var ignored error
	for {
		reply, err := co.ReadMsg()
		if err == nil {
			err = checkReply(reply, id, m)
			if err == nil {
				return reply, nil
			}
		}
		if network == "tcp" || isNetErr(err) {
			if ignored != nil {
				err = fmt.Errorf("%w (after ignoring: %w)", err, ignored)
			}
			if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
				err = fmt.Errorf("%w: %w", ctxErr, err)
			}
			return nil, fmt.Errorf("%s read: %w", network, err)
		}
		ignored = err
	}
}

func isNetErr(err error) bool {
	var nerr net.Error
	return errors.As(err, &nerr)
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
