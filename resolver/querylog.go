package resolver

import (
	"context"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
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
					zap.Stringer("client", req.Client), zap.String("name", q.Name),
					zap.String("type", dns.Type(q.Qtype).String()),
					zap.String("list", resp.List), zap.String("app", resp.App), zap.String("rule", resp.Rule))
			}
			return resp, err
		})
	}
}

// QueryLog logs one line per query at info level. It is off unless configured: a busy resolver
// would otherwise write its clients' browsing history to the log.
func QueryLog(l *zap.Logger) Middleware {
	return func(next Resolver) Resolver {
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			resp, err := next.Resolve(ctx, req)
			q := req.Question()
			fields := []zap.Field{
				zap.Stringer("client", req.Client),
				zap.Stringer("transport", req.Transport),
				zap.String("name", q.Name),
				zap.String("type", dns.Type(q.Qtype).String()),
				zap.Duration("duration", time.Since(req.Received)),
			}
			switch {
			case err != nil:
				fields = append(fields, zap.Stringer("outcome", OutcomeError), zap.Error(err))
			case resp != nil && resp.Msg != nil:
				fields = append(fields, zap.Stringer("outcome", resp.Outcome),
					zap.String("rcode", dns.RcodeToString[resp.Msg.Rcode]))
				if resp.Upstream != "" {
					fields = append(fields, zap.String("upstream", resp.Upstream))
				}
				if resp.Group != "" {
					fields = append(fields, zap.String("group", resp.Group))
				}
				if resp.Allowed != NotAllowed {
					fields = append(fields, zap.Stringer("allowed", resp.Allowed))
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
			}
			l.Info("query", fields...)
			return resp, err
		})
	}
}
