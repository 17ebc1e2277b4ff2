package resolver

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Matcher says whether a name is blocked and by which list and entry. blocklist.Live satisfies it.
// Match must be safe for concurrent use and cheap: it runs for every query.
type Matcher interface {
	Match(name string) (list, rule string, ok bool)
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

// Reply answers req, blocked by rule of list.
func (s *Sinkhole) Reply(req *dns.Msg, list, rule string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
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
		m.Ns = []dns.RR{s.soa(rule, ttl)}
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
			m.Ns = []dns.RR{s.soa(rule, ttl)}
		}
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(EDNSBufferSize, opt.Do())
		e := m.IsEdns0()
		e.Option = append(e.Option, &dns.EDNS0_EDE{
			InfoCode:  dns.ExtendedErrorCodeBlocked,
			ExtraText: "blocked by list " + list,
		})
	}
	return m
}

// soa is the negative-caching SOA: its owner is the blocked entry (the apex of what is cut off),
// and TTL and MINIMUM are both the block TTL so resolvers cache the block for exactly that long.
func (s *Sinkhole) soa(rule string, ttl uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: dns.Fqdn(rule), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      sinkholeMname,
		Mbox:    sinkholeRname,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  ttl,
	}
}

// Block sinkholes queries whose name m matches and passes the rest on.
func Block(m Matcher, s *Sinkhole) Middleware {
	return func(next Resolver) Resolver {
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			list, rule, ok := m.Match(req.Question().Name)
			if !ok {
				return next.Resolve(ctx, req)
			}
			return &Response{Msg: s.Reply(req.Msg, list, rule), Outcome: OutcomeBlocked, List: list, Rule: rule}, nil
		})
	}
}
