package upstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
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
	Limits []*resolver.Limiter
	// Health, if set, takes an upstream that keeps failing out of rotation for a while.
	Health *HealthPolicy
	// OnHealth, if set, is called when an upstream is taken out of rotation or comes back.
	OnHealth func(upstream string, healthy bool)

	once    sync.Once
	states  []upstreamState
	all     []int     // 0..n-1: the order when every upstream is in rotation
	queries sync.Pool // *dns.Msg: the queries sent, reused once Resolve returns (see upstreamQuery)
}

// HealthPolicy: after FailThreshold consecutive failures an upstream is skipped for Cooldown,
// doubled at each further failed probe up to MaxCooldown. When its cooldown ends, the next query
// probes it; a success brings it back. When every upstream is cooling down, the one that comes
// back soonest is tried anyway, so clients still get an answer as soon as any upstream can give one.
type HealthPolicy struct {
	FailThreshold         int
	Cooldown, MaxCooldown time.Duration
}

type upstreamState struct {
	fails     atomic.Int32
	downUntil atomic.Int64 // unix nanoseconds; 0 when in rotation
	cooldown  atomic.Int64 // the last cooldown, doubled on each failed probe
}

// deadlineExchanger is an Upstream that bounds an exchange with socket deadlines alone (plain
// UDP and TCP). Forward gives it the attempt's deadline instead of a context with a timeout,
// which would cost a timer, a cancel context and their registration with the query's context on
// every forwarded query.
type deadlineExchanger interface {
	exchangeBy(ctx context.Context, m *dns.Msg, deadline time.Time) (*dns.Msg, error)
}

var _ deadlineExchanger = (*plainUpstream)(nil)

// ErrUpstreamBusy is the error for an upstream skipped because its in-flight limit was reached.
var ErrUpstreamBusy = errors.New("upstream has too many queries in flight")

var _ resolver.Resolver = (*Forward)(nil)

// Resolve implements Resolver. It fails over to the next upstream on timeouts, network errors,
// mismatched replies and SERVFAIL/REFUSED/FORMERR answers; when all fail it returns an error that
// wraps ErrUpstreamsFailed and every upstream's error.
func (f *Forward) Resolve(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
	f.once.Do(func() {
		f.states = make([]upstreamState, len(f.Upstreams))
		for i := range f.Upstreams {
			f.all = append(f.all, i)
		}
	})
	q := f.upstreamQuery(req.Msg)
	if q != req.Msg {
		// Every Upstream is done with q when its Exchange returns: the UDP reader matches
		// replies by ID against a waiter that holds a copy of the question, and DoT and DoH pack
		// q first. The question slice is the request's and is not reused.
		defer f.queries.Put(q)
	}
	timeout := f.AttemptTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	var errs []error
	for _, i := range f.order() {
		u := f.Upstreams[i]
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		var lim *resolver.Limiter
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
		start := time.Now()
		var reply *dns.Msg
		var err error
		if de, ok := u.(deadlineExchanger); ok {
			reply, err = de.exchangeBy(ctx, q, start.Add(timeout))
		} else {
			actx, cancel := context.WithTimeout(ctx, timeout)
			reply, err = u.Exchange(actx, q)
			cancel()
		}
		lim.Release()
		if err == nil {
			switch reply.Rcode {
			case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeFormatError:
				err = &resolver.RcodeError{Rcode: reply.Rcode}
			}
		}
		if f.Observe != nil {
			f.Observe(u.Address(), time.Since(start), err)
		}
		f.record(ctx, i, err)
		if err == nil {
			if req.Msg.IsTsig() == nil || reply.IsTsig() == nil { // a signed reply passes unchanged
				reply.Authoritative = false // the upstream may be authoritative; we are not
			}
			return &resolver.Response{Msg: reply, Outcome: resolver.OutcomeForwarded, Upstream: u.Address()}, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u.Address(), err))
	}
	return nil, fmt.Errorf("%w: %w", resolver.ErrUpstreamsFailed, errors.Join(errs...))
}

func (f *Forward) anyDown() bool {
	for i := range f.states {
		if f.states[i].downUntil.Load() != 0 {
			return true
		}
	}
	return false
}

// order returns the upstreams to try, in configured order, leaving out those cooling down (or,
// if all are, only the one whose cooldown ends first).
func (f *Forward) order() []int {
	if f.Health == nil {
		return f.all // no per-query allocation without health tracking
	}
	// Upstreams in rotation have downUntil 0: the usual case needs no clock.
	if !f.anyDown() {
		return f.all
	}
	now := time.Now().UnixNano()
	down := 0
	for i := range f.states {
		if f.states[i].downUntil.Load() > now {
			down++
		}
	}
	if down == 0 {
		return f.all
	}
	out := make([]int, 0, len(f.Upstreams))
	soonest, soonestAt := 0, int64(math.MaxInt64)
	for i := range f.Upstreams {
		until := f.states[i].downUntil.Load()
		if f.Health == nil || until <= now {
			out = append(out, i)
		} else if until < soonestAt {
			soonest, soonestAt = i, until
		}
	}
	if len(out) == 0 && len(f.Upstreams) > 0 {
		out = append(out, soonest)
	}
	return out
}

// record updates upstream i's health after an exchange.
func (f *Forward) record(ctx context.Context, i int, err error) {
	h := f.Health
	if h == nil {
		return
	}
	st := &f.states[i]
	if err == nil {
		st.fails.Store(0)
		if st.downUntil.Swap(0) != 0 {
			st.cooldown.Store(0)
			if f.OnHealth != nil {
				f.OnHealth(f.Upstreams[i].Address(), true)
			}
		}
		return
	}
	// Our own cancellation (shutdown, the client's deadline) says nothing about the upstream.
	if errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	if int(st.fails.Add(1)) < max(h.FailThreshold, 1) {
		return
	}
	cd := time.Duration(st.cooldown.Load()) * 2
	cd = max(cd, h.Cooldown)
	if h.MaxCooldown > 0 {
		cd = min(cd, h.MaxCooldown)
	}
	st.cooldown.Store(int64(cd))
	if st.downUntil.Swap(time.Now().Add(cd).UnixNano()) == 0 && f.OnHealth != nil {
		f.OnHealth(f.Upstreams[i].Address(), false)
	}
}

// upstreamQuery is the query we send for req: the question and the header bits that matter
// (RD, CD), and EDNS only if the client used it, with the buffer clamped to EDNSBufferSize and DO
// kept. Client EDNS options (cookies, ECS, padding) are hop-by-hop or private and not passed on.
//
// A TSIG-signed query is sent as it came (RFC 8945 §5.5): we hold no keys, and any change but the
// ID (which the TSIG's Original ID covers) would break its MAC.
func (f *Forward) upstreamQuery(req *dns.Msg) *dns.Msg {
	if req.IsTsig() != nil {
		return req
	}
	q, _ := f.queries.Get().(*dns.Msg)
	if q == nil {
		q = new(dns.Msg)
	}
	// A pooled query keeps its OPT record and Extra slice: EDNS is on most queries, and
	// SetEdns0 would allocate both every time.
	var opt *dns.OPT
	if len(q.Extra) == 1 {
		opt, _ = q.Extra[0].(*dns.OPT)
	}
	extra := q.Extra[:0]
	*q = dns.Msg{
		MsgHdr: dns.MsgHdr{
			Opcode:            dns.OpcodeQuery,
			RecursionDesired:  req.RecursionDesired,
			CheckingDisabled:  req.CheckingDisabled,
			AuthenticatedData: req.AuthenticatedData,
		},
		Question: req.Question,
	}
	if ropt := req.IsEdns0(); ropt != nil {
		size := ropt.UDPSize()
		size = max(size, dns.MinMsgSize)
		size = min(size, resolver.EDNSBufferSize)
		if opt == nil {
			opt = new(dns.OPT)
		}
		*opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(size)
		if ropt.Do() {
			opt.SetDo()
		}
		q.Extra = append(extra, opt)
	}
	return q
}
