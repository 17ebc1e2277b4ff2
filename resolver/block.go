package resolver

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Matcher says whether a name is blocked and by which list and entry, in all lists (Match) or in
// a client group's (MatchIn, lists selected by bit). blocklist.Live satisfies it. Both must be
// safe for concurrent use and cheap: they run for every query.
type Matcher interface {
	Match(name string) (list, rule string, ok bool)
	MatchIn(name string, lists uint64) (list, rule string, ok bool)
}

// SinkholeMode is how a blocked query is answered.
type SinkholeMode uint8

// Sinkhole modes.
const (
	// SinkholeNXDOMAIN answers NXDOMAIN with a SOA so clients cache the negative answer.
	SinkholeNXDOMAIN SinkholeMode = iota
	// SinkholeNull answers A with 0.0.0.0 and AAAA with ::, other types NODATA.
	SinkholeNull
	// SinkholeRefused answers REFUSED.
	SinkholeRefused
	// SinkholeCustom answers A/AAAA with configured addresses (NODATA where none is set).
	SinkholeCustom
)

var sinkholeModeNames = []string{"nxdomain", "null", "refused", "custom"}

func (m SinkholeMode) String() string {
	if int(m) < len(sinkholeModeNames) {
		return sinkholeModeNames[m]
	}
	return "unknown"
}

// ParseSinkholeMode parses a mode name.
func ParseSinkholeMode(s string) (SinkholeMode, error) {
	for i, n := range sinkholeModeNames {
		if strings.EqualFold(s, n) {
			return SinkholeMode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown sinkhole mode %q (want one of %s)", s, strings.Join(sinkholeModeNames, ", "))
}

// Sinkhole builds the replies to blocked queries.
type Sinkhole struct {
	Mode SinkholeMode
	// IPv4 and IPv6 are the answers in SinkholeCustom mode; an invalid Addr means NODATA for that type.
	IPv4, IPv6 netip.Addr
	// TTL of the sinkhole answers and of the SOA, hence how long clients cache a block. Zero means 60s.
	TTL time.Duration
}

// sinkholeSOA names are under .invalid (RFC 6761) so they can never resolve to anything real.
const (
	sinkholeMname = "dnsfence.invalid."
	sinkholeRname = "hostmaster.dnsfence.invalid."
)

// Reply answers req with a sinkhole. apex owns the negative-caching SOA (the blocked entry, or the
// question's name when an answer record was blocked); why is the Extended DNS Error text.
func (s *Sinkhole) Reply(req *dns.Msg, apex, why string) *dns.Msg {
	return s.reply(new(sinkReply), req, apex, why)
}

// sinkReply is what a sinkhole answer needs, allocated once: a blocked query is answered without
// waiting, so its few allocations are much of its cost, and what it allocates sets how often
// the collector runs. The block stage takes them from a pool, and the Handler gives them back
// once a UDP reply is packed (Response.release).
type sinkReply struct {
	resp     Response
	msg      dns.Msg
	soa      dns.SOA
	rr       [1]dns.RR
	question [1]dns.Question
}

func (s *Sinkhole) reply(r *sinkReply, req *dns.Msg, apex, why string) *dns.Msg {
	m := &r.msg
	// As SetReply, with the question in r (the Handler gives the reply the request's anyway).
	m.Id, m.Response, m.Opcode = req.Id, true, req.Opcode
	if m.Opcode == dns.OpcodeQuery {
		m.RecursionDesired, m.CheckingDisabled = req.RecursionDesired, req.CheckingDisabled
	}
	m.Rcode = dns.RcodeSuccess
	if len(req.Question) > 0 {
		r.question[0] = req.Question[0]
		m.Question = r.question[:]
	}
	ttl := uint32(s.TTL / time.Second)
	if s.TTL <= 0 {
		ttl = 60
	}
	q := req.Question[0]
	switch s.Mode {
	case SinkholeRefused:
		m.Rcode = dns.RcodeRefused
	case SinkholeNXDOMAIN:
		m.Rcode = dns.RcodeNameError
		m.Ns = r.setSOA(apexName(q.Name, apex), ttl)
	default:
		v4, v6 := s.IPv4, s.IPv6
		if s.Mode == SinkholeNull {
			v4, v6 = netip.IPv4Unspecified(), netip.IPv6Unspecified()
		}
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: ttl}
		switch {
		case q.Qtype == dns.TypeA && v4.IsValid():
			m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: v4.AsSlice()}}
		case q.Qtype == dns.TypeAAAA && v6.IsValid():
			m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: v6.AsSlice()}}
		default: // NODATA, cacheable thanks to the SOA (RFC 2308)
			m.Ns = r.setSOA(apexName(q.Name, apex), ttl)
		}
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(EDNSBufferSize, opt.Do())
		e := m.IsEdns0()
		e.Option = append(e.Option, &dns.EDNS0_EDE{
			InfoCode:  dns.ExtendedErrorCodeBlocked,
			ExtraText: why,
		})
	}
	return m
}

// apexName is apex as a fully qualified name: the end of the question name qname when apex is a
// whole-label suffix of it spelled alike (no allocation on every blocked query), else apex with a
// dot. The SOA owner keeps the rule's spelling either way.
func apexName(qname, apex string) string {
	n := len(apex)
	if n > 0 && apex[n-1] != '.' && len(qname) > n && qname[len(qname)-1] == '.' {
		start := len(qname) - 1 - n
		if qname[start:len(qname)-1] == apex && (start == 0 || qname[start-1] == '.') {
			return qname[start:]
		}
	}
	return dns.Fqdn(apex)
}

// setSOA fills in the negative-caching SOA and returns the authority section holding it: its
// owner is apex (what is cut off), and TTL and MINIMUM are both the block TTL so resolvers cache
// the block for exactly that long.
func (r *sinkReply) setSOA(apex string, ttl uint32) []dns.RR {
	r.soa = dns.SOA{
		Hdr:     dns.RR_Header{Name: apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      sinkholeMname,
		Mbox:    sinkholeRname,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  ttl,
	}
	r.rr[0] = &r.soa
	return r.rr[:]
}

// Blocker is the block stage's configuration.
type Blocker struct {
	// Matcher decides which names are blocked. Required.
	Matcher Matcher
	// Sinkhole builds the replies. Required.
	Sinkhole *Sinkhole
	// ListSinkholes overrides Sinkhole for the lists it names (e.g. a bypass canary list that
	// must be NXDOMAIN whatever the global mode). Must not be modified once the stage runs.
	ListSinkholes map[string]*Sinkhole
	// InspectAnswers also checks forwarded answers: a CNAME chain that reaches a blocked name
	// (CNAME cloaking, e.g. tracker.example.com CNAME x.alipay.com) is sinkholed like the name.
	InspectAnswers bool
	// BlockedNets sinkholes answers with an A or AAAA record inside one of these prefixes.
	BlockedNets []netip.Prefix
	// Apps maps a list name to the app its blocks are filed under (Response.App, EDE text).
	// Must not be modified once the stage runs.
	Apps map[string]string
	// Now is the clock for exemptions; nil means time.Now.
	Now func() time.Time
	// Skip, if set, exempts names from blocking altogether (trusted zones).
	Skip func(name string) bool
	// Pause, if set, lets every match through while it is active (read with Now).
	Pause *Pause

	// replies recycles sinkReplies that Handler is done with (see Response.release).
	replies *sync.Pool
}

func (b *Blocker) match(req *Request, name string) (list, rule string, ok bool) {
	if req.Group == nil {
		return b.Matcher.Match(name)
	}
	return b.Matcher.MatchIn(name, req.Group.Lists)
}

// allowance says whether a pause or the client's group lets a match of list through anyway.
func (b *Blocker) allowance(req *Request, list string) Allowance {
	if b.Pause != nil && b.Pause.active(b.Now) {
		return AllowedPaused
	}
	g := req.Group
	switch {
	case g == nil:
		return NotAllowed
	case g.LogOnly:
		return AllowedLogOnly
	case len(g.Exemptions) > 0 && g.exempt(list, b.Apps[list], b.Now()) != nil:
		return AllowedExempt
	}
	return NotAllowed
}

// allow passes a matched query on (log-only group, exemption, pause) and annotates the answer
// with what would have blocked it.
func (b *Blocker) allow(resp *Response, req *Request, list, rule string, why Allowance, record dns.RR) *Response {
	resp.List, resp.Rule, resp.App, resp.Allowed = list, rule, b.Apps[list], why
	if req.Group != nil {
		resp.Group = req.Group.Name
	}
	if record != nil {
		resp.Record = record.String()
	}
	return resp
}

// blocked builds the response for a query blocked by rule of list.
func (b *Blocker) blocked(req *Request, list, rule, apex string, record dns.RR) *Response {
	app := b.Apps[list]
	var why string // the EDE text; only a client using EDNS gets one (see Sinkhole.Reply)
	if req.Msg.IsEdns0() != nil {
		why = "blocked by list " + list
		if app != "" {
			why += " (app " + app + ")"
		}
	}
	sink := b.Sinkhole
	if s, ok := b.ListSinkholes[list]; ok {
		sink = s
	}
	var sr *sinkReply
	if b.replies != nil {
		sr = b.replies.Get().(*sinkReply)
	} else {
		sr = new(sinkReply)
	}
	r := &sr.resp
	*r = Response{Msg: sink.reply(sr, req.Msg, apex, why), Outcome: OutcomeBlocked, List: list, Rule: rule, App: app,
		pooled: sr, pool: b.replies}
	if req.Group != nil {
		r.Group = req.Group.Name
	}
	if record != nil {
		r.Record = record.String()
	}
	return r
}

// BlockedNetsList is the list name reported for answers blocked by Blocker.BlockedNets.
const BlockedNetsList = "blocked-nets"

// Block returns the block stage: queries whose name b.Matcher matches are sinkholed and never
// forwarded; the answers to the rest are inspected (see Blocker) before they are returned.
func Block(b Blocker) Middleware {
	b.Apps, b.ListSinkholes = maps.Clone(b.Apps), maps.Clone(b.ListSinkholes)
	b.replies = &sync.Pool{New: func() any { return new(sinkReply) }}
	if b.Now == nil {
		b.Now = time.Now
	}
	return func(next Resolver) Resolver {
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			q := req.Question()
			if b.Skip != nil && b.Skip(q.Name) {
				return next.Resolve(ctx, req)
			}
			qList, qRule, qHit := b.match(req, q.Name)
			allowed := NotAllowed
			if qHit {
				if allowed = b.allowance(req, qList); allowed == NotAllowed {
					return b.blocked(req, qList, qRule, qRule, nil), nil
				}
			}
			resp, err := next.Resolve(ctx, req)
			if err != nil || resp == nil || resp.Msg == nil {
				return resp, err
			}
			if qHit {
				return b.allow(resp, req, qList, qRule, allowed, nil), nil
			}
			if !b.InspectAnswers && len(b.BlockedNets) == 0 {
				return resp, nil
			}
			if list, rule, rr, ok := b.inspect(req, resp.Msg); ok {
				if why := b.allowance(req, list); why != NotAllowed {
					return b.allow(resp, req, list, rule, why, rr), nil
				}
				// The SOA is for the question's name: the blocked target is in another zone.
				return b.blocked(req, list, rule, q.Name, rr), nil
			}
			return resp, nil
		})
	}
}

// inspect finds the first answer record that makes the whole answer blocked.
func (b *Blocker) inspect(req *Request, m *dns.Msg) (list, rule string, rr dns.RR, ok bool) {
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.CNAME:
			if !b.InspectAnswers {
				continue
			}
			if list, rule, ok := b.match(req, rr.Target); ok {
				return list, rule, rr, true
			}
		case *dns.A:
			if p, ok := b.inNets(rr.A); ok {
				return BlockedNetsList, p.String(), rr, true
			}
		case *dns.AAAA:
			if p, ok := b.inNets(rr.AAAA); ok {
				return BlockedNetsList, p.String(), rr, true
			}
		}
	}
	return "", "", nil, false
}

func (b *Blocker) inNets(ip []byte) (netip.Prefix, bool) {
	if len(b.BlockedNets) == 0 {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	addr = addr.Unmap()
	for _, p := range b.BlockedNets {
		if p.Contains(addr) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// release gives the sinkhole reply behind r back to its pool, if it came from one. Only the
// Handler calls it, once the reply has been packed and nothing refers to r or its Msg any more
// (not for DoH, whose writer keeps the Msg until later).
func (r *Response) release() {
	sr, pool := r.pooled, r.pool
	if sr == nil || pool == nil {
		return
	}
	*sr = sinkReply{}
	pool.Put(sr)
}
