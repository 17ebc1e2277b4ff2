package resolver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// Forward is the terminal stage: it sends the query to the upstreams in order until one answers.
type Forward struct {
	Upstreams []Upstream
	// AttemptTimeout bounds one exchange with one upstream; zero means 2s. The request context's
	// deadline bounds the whole failover.
	AttemptTimeout time.Duration
	// Observe, if set, is called after every exchange (err nil on success) for metrics.
	Observe func(upstream string, d time.Duration, err error)
	// Limits, if set, bounds the exchanges in flight per upstream (same order as Upstreams):
	// a busy upstream is skipped as if it had failed, so one slow upstream cannot hold every
	// query (and its goroutine) hostage.
	Limits []*Limiter
}

// ErrUpstreamBusy is the error for an upstream skipped because its in-flight limit was reached.
var ErrUpstreamBusy = errors.New("upstream has too many queries in flight")

var _ Resolver = (*Forward)(nil)

// Resolve implements Resolver. It fails over to the next upstream on timeouts, network errors,
// mismatched replies and SERVFAIL/REFUSED/FORMERR answers; when all fail it returns an error that
// wraps ErrUpstreamsFailed and every upstream's error.
func (f *Forward) Resolve(ctx context.Context, req *Request) (*Response, error) {
	q := upstreamQuery(req.Msg)
	timeout := f.AttemptTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	var errs []error
	for i, u := range f.Upstreams {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		var lim *Limiter
		if i < len(f.Limits) {
			lim = f.Limits[i]
		}
		if !lim.TryAcquire() {
			if f.Observe != nil {
				f.Observe(u.Address(), 0, ErrUpstreamBusy)
			}
			errs = append(errs, fmt.Errorf("%s: %w", u.Address(), ErrUpstreamBusy))
			continue
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		reply, err := u.Exchange(actx, q)
		cancel()
		lim.Release()
		if err == nil {
			switch reply.Rcode {
			case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeFormatError:
				err = &RcodeError{Rcode: reply.Rcode}
			}
		}
		if f.Observe != nil {
			f.Observe(u.Address(), time.Since(start), err)
		}
		if err == nil {
			return &Response{Msg: reply, Outcome: OutcomeForwarded, Upstream: u.Address()}, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u.Address(), err))
	}
	return nil, fmt.Errorf("%w: %w", ErrUpstreamsFailed, errors.Join(errs...))
}

// upstreamQuery is the query we send for req: the question and the header bits that matter
// (RD, CD), and EDNS only if the client used it, with the buffer clamped to EDNSBufferSize and DO
// kept. Client EDNS options (cookies, ECS, padding) are hop-by-hop or private and not passed on.
func upstreamQuery(req *dns.Msg) *dns.Msg {
	q := &dns.Msg{
		MsgHdr: dns.MsgHdr{
			Opcode:            dns.OpcodeQuery,
			RecursionDesired:  req.RecursionDesired,
			CheckingDisabled:  req.CheckingDisabled,
			AuthenticatedData: req.AuthenticatedData,
		},
		Question: req.Question,
	}
	if opt := req.IsEdns0(); opt != nil {
		size := opt.UDPSize()
		size = max(size, dns.MinMsgSize)
		size = min(size, EDNSBufferSize)
		q.SetEdns0(size, opt.Do())
	}
	return q
}
