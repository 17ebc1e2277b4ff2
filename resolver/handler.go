package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// EDNSBufferSize is the UDP payload size dnsfence advertises and the most it asks upstreams for
// (DNS Flag Day 2020: avoids IP fragmentation).
const EDNSBufferSize = 1232

// Handler adapts a Resolver to miekg's dns.Handler. It is the one place that writes a reply: it
// gives each query a context with a deadline, turns errors and panics into SERVFAIL, makes the
// reply match the request (ID, question, EDNS) and truncates it to what the client can take.
type Handler struct {
	Resolver Resolver
	// Timeout bounds one query end to end; zero means 5s.
	Timeout time.Duration
	Logger  *zap.Logger
	// OnPanic, if set, is called after a panic in the chain was recovered (for a counter).
	OnPanic func()
	// InFlight, if set, bounds the queries being answered at once: a query that finds it full is
	// dropped (clients retry) instead of piling up goroutines and upstream work under a flood.
	InFlight *Limiter
	// OnOverload, if set, is called for each query dropped because InFlight was full.
	OnOverload func()
}

// Limiter is a counting semaphore that never blocks.
type Limiter struct{ slots chan struct{} }

// NewLimiter allows n holders at once; n <= 0 returns nil (no limit).
func NewLimiter(n int) *Limiter {
	if n <= 0 {
		return nil
	}
	return &Limiter{slots: make(chan struct{}, n)}
}

// TryAcquire takes a slot if one is free. A nil Limiter always succeeds.
func (l *Limiter) TryAcquire() bool {
	if l == nil {
		return true
	}
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// Release frees a slot taken by TryAcquire.
func (l *Limiter) Release() {
	if l != nil {
		<-l.slots
	}
}

var _ dns.Handler = (*Handler)(nil)

// A PackingWriter is a UDP ResponseWriter that knows the client's address without allocating a
// net.Addr, and that packs the reply inside WriteMsg and keeps no reference to it afterwards, so
// the Handler may recycle the reply once WriteMsg returns (the batched UDP listener's workers).
type PackingWriter interface {
	dns.ResponseWriter
	ClientAddr() netip.Addr
}

// ServeDNS implements dns.Handler.
func (h *Handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if u, ok := w.(PackingWriter); ok {
		h.serve(w, r, UDP, u.ClientAddr())
		return
	}
	t := UDP
	a := w.RemoteAddr()
	if _, ok := a.(*net.TCPAddr); ok {
		t = TCP
	}
	h.serve(w, r, t, addrOf(a))
}

// ServeTransport is ServeDNS for a query that arrived over t (DoT and DoH listeners say so).
func (h *Handler) ServeTransport(w dns.ResponseWriter, r *dns.Msg, t Transport) {
	h.serve(w, r, t, addrOf(w.RemoteAddr()))
}

func (h *Handler) serve(w dns.ResponseWriter, r *dns.Msg, t Transport, client netip.Addr) {
	if !h.InFlight.TryAcquire() {
		if h.OnOverload != nil {
			h.OnOverload()
		}
		return
	}
	defer h.InFlight.Release()
	// The request and its context in one allocation: they live exactly as long as each other.
	q := &struct {
		req Request
		ctx queryContext
	}{req: Request{Msg: r, Client: client, Received: time.Now(), Transport: t}}
	req, ctx := &q.req, &q.ctx
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx.parent, ctx.deadline = context.Background(), req.Received.Add(timeout)
	if wt, ok := w.(Waiter); ok {
		ctx.waiter = wt
	}
	resp, err := h.resolve(ctx, req)
	ctx.cancel()

	var reply *dns.Msg
	if err != nil || resp == nil || resp.Msg == nil {
		if err == nil {
			err = errors.New("resolver returned no reply")
		}
		h.logger().Warn("query failed", zap.String("name", req.Question().Name),
			zap.String("type", dns.Type(req.Question().Qtype).String()),
			zap.Stringer("client", req.Client), zap.Error(err))
		reply = ServFail(r, err)
	} else {
		if resp.Drop {
			return
		}
		reply = resp.Msg
	}
	finalize(reply, r, req.Transport)
	if err := w.WriteMsg(reply); err != nil {
		h.logger().Debug("write reply", zap.Stringer("client", req.Client), zap.Error(err))
	}
	if _, packed := w.(PackingWriter); packed && resp != nil {
		resp.release() // the UDP worker packed the reply in WriteMsg
	}
}

func (h *Handler) resolve(ctx context.Context, req *Request) (resp *Response, err error) {
	defer func() {
		if v := recover(); v != nil {
			h.logger().Error("panic while resolving", zap.Any("panic", v),
				zap.String("name", req.Question().Name), zap.ByteString("stack", debug.Stack()))
			if h.OnPanic != nil {
				h.OnPanic()
			}
			resp, err = nil, fmt.Errorf("panic: %v", v)
		}
	}()
	return h.Resolver.Resolve(ctx, req)
}

func (h *Handler) logger() *zap.Logger {
	if h.Logger == nil {
		return zap.NewNop()
	}
	return h.Logger
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// finalize makes reply answer req: same ID, opcode, RD and question (with the client's spelling, which
// 0x20-randomizing clients check); EDNS only if the client used it; truncated to the client's UDP size.
func finalize(reply, req *dns.Msg, t Transport) {
	reply.Id = req.Id
	if req.IsTsig() != nil && reply.IsTsig() != nil {
		// A signed upstream reply to a signed query is passed back as it came (RFC 8945 §5.5): its
		// MAC covers every bit but the ID, which the TSIG's Original ID stands in for.
		reply.Compress = true
		return
	}
	reply.Response = true
	reply.Opcode = req.Opcode
	reply.RecursionDesired = req.RecursionDesired
	reply.RecursionAvailable = true
	reply.CheckingDisabled = req.CheckingDisabled
	reply.Question = req.Question
	reply.Compress = true
	if req.Opcode != dns.OpcodeQuery {
		// NOTIMP for an opcode we do not serve: the flags are QUERY's, so none is echoed or set.
		reply.RecursionDesired, reply.RecursionAvailable, reply.CheckingDisabled = false, false, false
		reply.AuthenticatedData, reply.Authoritative, reply.Zero = false, false, false
	}

	clientOPT := req.IsEdns0()
	opt := reply.IsEdns0()
	switch {
	case clientOPT == nil && opt != nil:
		removeOPT(reply)
	case clientOPT != nil:
		if opt == nil {
			opt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
			reply.Extra = append(reply.Extra, opt)
		}
		opt.SetUDPSize(EDNSBufferSize)
		opt.SetDo(clientOPT.Do())
		opt.SetVersion(0)
		// Only EDE survives: cookies, NSID and padding belong to the hop to the upstream.
		kept := opt.Option[:0]
		for _, o := range opt.Option {
			if o.Option() == dns.EDNS0EDE {
				kept = append(kept, o)
			}
		}
		opt.Option = kept
	}

	if t == UDP {
		size := dns.MinMsgSize
		if clientOPT != nil && int(clientOPT.UDPSize()) > size {
			size = int(clientOPT.UDPSize())
		}
		reply.Truncate(size)
	}
}

func removeOPT(m *dns.Msg) {
	kept := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			kept = append(kept, rr)
		}
	}
	m.Extra = kept
}

// ServFail builds a SERVFAIL reply to req. When the client speaks EDNS and the cause is that no
// upstream answered, it carries Extended DNS Error 22 (No Reachable Authority).
func ServFail(req *dns.Msg, cause error) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	if req.IsEdns0() != nil && errors.Is(cause, ErrUpstreamsFailed) {
		m.SetEdns0(EDNSBufferSize, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeNoReachableAuthority})
	}
	return m
}

// AcceptMsg is the servers' MsgAcceptFunc. miekg's default answers some malformed queries itself,
// before the chain (and its metrics) sees them; this one only drops what must never get a reply
// (responses, which would let two servers loop) and leaves the rest to Validate.
func AcceptMsg(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 { // QR
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// Validate answers queries dnsfence does not serve: FORMERR unless there is exactly one question,
// NOTIMP for opcodes other than QUERY, BADVERS for an EDNS version other than 0 (RFC 6891
// §6.1.3: we speak only version 0, so we answer, not the cache or an upstream), REFUSED for zone
// transfers (we are not authoritative for anything). It sits right after the metrics stage so
// those replies are counted too.
func Validate() Middleware {
	return func(next Resolver) Resolver {
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			m := req.Msg
			rcode := -1
			switch {
			case m.Opcode != dns.OpcodeQuery:
				rcode = dns.RcodeNotImplemented
			case len(m.Question) != 1:
				rcode = dns.RcodeFormatError
			case m.IsEdns0() != nil && m.IsEdns0().Version() != 0:
				rcode = dns.RcodeBadVers
			case m.Question[0].Qtype == dns.TypeAXFR || m.Question[0].Qtype == dns.TypeIXFR:
				rcode = dns.RcodeRefused
			}
			if rcode < 0 {
				return next.Resolve(ctx, req)
			}
			reply := new(dns.Msg)
			reply.SetRcode(m, rcode)
			outcome := OutcomeInvalid
			if rcode == dns.RcodeRefused {
				outcome = OutcomeRefused
			}
			return &Response{Msg: reply, Outcome: outcome}, nil
		})
	}
}
