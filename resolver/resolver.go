// Package resolver holds the query path of dnsfence: the request model, a chain of small stages that
// each return the reply (validation, access, rate limits, policy, block and sinkhole, local data,
// routing, cache, coalescing, query log), and the dns.Handler adapter that writes it once.
//
// A stage never writes to the wire: it returns a *Response (or an error, which the Handler turns into
// SERVFAIL). That keeps stages pure enough to test by calling Resolve and lets the outermost stages
// (metrics, query log) see every outcome.
//
// It must not open sockets: listeners live in resolver/listen and upstream clients (the terminal
// stage) in resolver/upstream, both of which import this package, never the other way round. It
// imports neither blocklist nor metrics: they meet it through small interfaces and callbacks.
package resolver

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Transport is how a query reached dnsfence.
type Transport uint8

// Transports.
const (
	UDP Transport = iota
	TCP
	DoT
	DoH
)

func (t Transport) String() string {
	switch t {
	case TCP:
		return "tcp"
	case DoT:
		return "tls"
	case DoH:
		return "https"
	}
	return "udp"
}

// Request is one client query. Stages must not modify Msg; copy it first.
type Request struct {
	Msg       *dns.Msg
	Client    netip.Addr
	Transport Transport
	Received  time.Time
	// Group is the client's policy group, set by the Policy stage; nil means every list applies.
	Group *Group
}

// Question returns the request's only question, or a zero Question for malformed requests
// (which the Validate stage answers before anything else looks).
func (r *Request) Question() dns.Question {
	if len(r.Msg.Question) != 1 {
		return dns.Question{}
	}
	return r.Msg.Question[0]
}

// Outcome says how a query was answered. It is a bounded metric label.
type Outcome uint8

// Outcomes.
const (
	OutcomeForwarded Outcome = iota
	OutcomeCached
	OutcomeBlocked
	OutcomeRefused
	OutcomeRateLimited
	OutcomeInvalid
	OutcomeError
	OutcomeLocal
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"forwarded", "cached", "blocked", "refused", "ratelimited", "invalid", "error", "local"}

func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Outcomes lists every outcome, for callers that pre-create metric series.
func Outcomes() []Outcome {
	out := make([]Outcome, numOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

// Response is a stage's answer. Msg must not be nil.
type Response struct {
	Msg     *dns.Msg
	Outcome Outcome
	// Upstream is the address that answered a forwarded query.
	Upstream string
	// List and Rule name the blocklist and entry that matched a blocked query; App is the curated
	// app the list is filed under, if any (a bounded metric label).
	List, Rule, App string
	// Drop means send no reply at all (Msg still says what the reply would have been, for metrics).
	Drop bool
	// Group names the client's policy group ("" without groups).
	Group string
	// Allowed says why a query that matched a list was answered normally anyway (log-only group,
	// exemption, blocking paused); List, Rule and App then name what would have blocked it.
	Allowed Allowance
	// Record is the answer record that got a forwarded answer blocked (CNAME cloaking, blocked
	// address), in presentation format; empty when the question itself was blocked.
	Record string

	// A sinkhole reply taken from the block stage's pool, given back by release.
	pooled *sinkReply
	pool   *sync.Pool
}

// Allowance is why a matched query was not blocked.
type Allowance uint8

// Allowances.
const (
	NotAllowed Allowance = iota
	AllowedLogOnly
	AllowedExempt
	// AllowedPaused: blocking was paused (Blocker.Pause).
	AllowedPaused
)

func (a Allowance) String() string {
	switch a {
	case AllowedLogOnly:
		return "log-only"
	case AllowedExempt:
		return "exempt"
	case AllowedPaused:
		return "paused"
	}
	return ""
}

// Resolver answers a request. Implementations must be safe for concurrent use.
type Resolver interface {
	Resolve(ctx context.Context, req *Request) (*Response, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, req *Request) (*Response, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, req *Request) (*Response, error) {
	return f(ctx, req)
}

// Middleware wraps the next stage of the chain.
type Middleware func(next Resolver) Resolver

// Chain returns final wrapped by mws; the first middleware is the outermost (sees the query first).
// Nil middlewares are skipped so optional stages can be passed unconditionally.
func Chain(final Resolver, mws ...Middleware) Resolver {
	r := final
	for i := len(mws) - 1; i >= 0; i-- {
		if mws[i] != nil {
			r = mws[i](r)
		}
	}
	return r
}

// Swappable is a Resolver whose implementation can be replaced while queries run: a config reload
// builds a whole new chain aside and stores it in one atomic step. Each query uses the chain it
// started with.
type Swappable struct{ p atomic.Pointer[Resolver] }

// NewSwappable starts with r.
func NewSwappable(r Resolver) *Swappable {
	s := &Swappable{}
	s.Store(r)
	return s
}

// Store replaces the chain for queries that start from now on.
func (s *Swappable) Store(r Resolver) { s.p.Store(&r) }

// Resolve implements Resolver.
func (s *Swappable) Resolve(ctx context.Context, req *Request) (*Response, error) {
	return (*s.p.Load()).Resolve(ctx, req)
}
