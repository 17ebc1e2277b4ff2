package resolver

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// PolicyLog logs the queries a log-only group or an exemption let through, which would otherwise
// have been blocked: the point of log-only mode is to see them, with or without the query log.
func PolicyLog(l *zap.Logger) Middleware {
	return func(next Resolver) Resolver {
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			resp, err := next.Resolve(ctx, req)
			if err == nil && resp != nil && resp.Allowed != NotAllowed {
				q := req.Question()
				l.Info("would have blocked",
					zap.Stringer("allowed", resp.Allowed), zap.String("group", resp.Group),
					zap.Stringer("client", req.Client), zap.String("qname", q.Name),
					zap.String("qtype", dns.Type(q.Qtype).String()),
					zap.String("list", resp.List), zap.String("app", resp.App), zap.String("rule", resp.Rule))
			}
			return resp, err
		})
	}
}

// ClientPrivacy is how much of a client's address the query log keeps.
type ClientPrivacy uint8

// Client privacy levels.
const (
	// ClientFull logs the whole address.
	ClientFull ClientPrivacy = iota
	// ClientTruncate logs the client's network only: the /24 of an IPv4 address, the /56 of an
	// IPv6 one (the usual size of a home delegation), with the rest zeroed.
	ClientTruncate
	// ClientOmit leaves the client out.
	ClientOmit
)

var clientPrivacyNames = []string{"full", "truncate", "omit"}

func (c ClientPrivacy) String() string {
	if int(c) < len(clientPrivacyNames) {
		return clientPrivacyNames[c]
	}
	return "unknown"
}

// ParseClientPrivacy parses full, truncate or omit.
func ParseClientPrivacy(s string) (ClientPrivacy, error) {
	for i, n := range clientPrivacyNames {
		if s == n {
			return ClientPrivacy(i), nil
		}
	}
	return 0, fmt.Errorf("%q: want full, truncate or omit", s)
}

// TruncateClient zeroes the host part of a: IPv4 to its /24, IPv6 to its /56.
func TruncateClient(a netip.Addr) netip.Addr {
	a = a.Unmap()
	bits := 56
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Addr{}
	}
	return p.Addr()
}

// QueryLog logs one line per query at info level. It is off unless configured: a busy resolver
// would otherwise write its clients' browsing history to the log. Fields: client (as client
// says), qname, qtype, transport, outcome, rcode, upstream (forwarded), list, rule and app (a
// list matched), group and allowed (with client groups), record (a blocked answer record),
// duration and error.
func QueryLog(l *zap.Logger, client ClientPrivacy) Middleware {
	return func(next Resolver) Resolver {
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			resp, err := next.Resolve(ctx, req)
			// The message is the outcome: the logger is already named "query", and a console line
			// should say what happened ("INFO query blocked …", not "INFO query query …").
			msg := OutcomeError.String()
			if err == nil && resp != nil && resp.Msg != nil {
				msg = resp.Outcome.String()
			}
			ce := l.Check(zapcore.InfoLevel, msg)
			if ce == nil {
				return resp, err
			}
			q := req.Question()
			fields := make([]zap.Field, 0, 16)
			switch client {
			case ClientFull:
				fields = append(fields, zap.Stringer("client", req.Client))
			case ClientTruncate:
				fields = append(fields, zap.Stringer("client", TruncateClient(req.Client)))
			}
			fields = append(fields,
				zap.String("qname", q.Name),
				zap.String("qtype", dns.Type(q.Qtype).String()),
				zap.String("transport", req.Transport.String()),
			)
			switch {
			case err != nil || resp == nil || resp.Msg == nil:
				// The handler answers SERVFAIL.
				fields = append(fields, zap.String("outcome", OutcomeError.String()),
					zap.String("rcode", dns.RcodeToString[dns.RcodeServerFailure]), zap.Error(err))
			default:
				fields = append(fields, zap.String("outcome", resp.Outcome.String()),
					zap.String("rcode", dns.RcodeToString[resp.Msg.Rcode]))
				if resp.Upstream != "" {
					fields = append(fields, zap.String("upstream", resp.Upstream))
				}
				if resp.Outcome == OutcomeBlocked || resp.Allowed != NotAllowed {
					fields = append(fields, zap.String("list", resp.List), zap.String("rule", resp.Rule))
					if resp.App != "" {
						fields = append(fields, zap.String("app", resp.App))
					}
					if resp.Record != "" {
						fields = append(fields, zap.String("record", resp.Record))
					}
				}
				if resp.Group != "" {
					fields = append(fields, zap.String("group", resp.Group))
				}
				if resp.Allowed != NotAllowed {
					fields = append(fields, zap.String("allowed", resp.Allowed.String()))
				}
			}
			fields = append(fields, zap.Duration("duration", time.Since(req.Received)))
			ce.Write(fields...)
			return resp, err
		})
	}
}
