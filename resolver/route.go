package resolver

import (
	"context"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Route sends the names in Zone (the zone and everything below it) to Resolver.
type Route struct {
	Zone     string
	Resolver Resolver
	// Trusted zones skip blocking (an internal zone whose names a blocklist must not break).
	Trusted bool
}

// Router is the terminal stage when names are routed by zone: the longest matching zone wins,
// everything else goes to Default.
type Router struct {
	// zones maps each lower-case FQDN zone to its route. route runs for every query (block's
	// Skip asks Trusted), so it looks up the name's suffixes instead of comparing every zone.
	zones   map[string]*Route
	Default Resolver
}

// NewRouter builds a Router; zones are case-insensitive and may lack the final dot. When a zone
// is given twice, the first route wins.
func NewRouter(def Resolver, routes ...Route) *Router {
	r := &Router{Default: def, zones: make(map[string]*Route, len(routes))}
	for _, rt := range routes {
		rt.Zone = strings.ToLower(dns.Fqdn(rt.Zone))
		if _, dup := r.zones[rt.Zone]; !dup {
			r.zones[rt.Zone] = &rt
		}
	}
	return r
}

// route returns the route of the longest zone that contains name, or nil. It does not allocate
// for names up to 255 bytes.
func (r *Router) route(name string) *Route {
	if len(r.zones) == 0 {
		return nil
	}
	var buf [256]byte
	var lower []byte
	if len(name) <= len(buf) {
		lower = buf[:len(name)]
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
	} else {
		lower = []byte(strings.ToLower(name))
	}
	if len(lower) == 0 || lower[len(lower)-1] != '.' {
		lower = append(lower, '.') // names off the wire are FQDNs; others are taken as absolute
	}
	// From the whole name to its shortest suffix, so the first hit is the longest zone. NextLabel
	// skips escaped dots, as dns.IsSubDomain does.
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		if rt, ok := r.zones[string(lower[off:])]; ok {
			return rt
		}
	}
	if rt, ok := r.zones["."]; ok {
		return rt
	}
	return nil
}

// Resolve implements Resolver.
func (r *Router) Resolve(ctx context.Context, req *Request) (*Response, error) {
	WillWait(ctx) // every route but the locally-served zones waits on an upstream
	if rt := r.route(req.Question().Name); rt != nil {
		return rt.Resolver.Resolve(ctx, req)
	}
	return r.Default.Resolve(ctx, req)
}

// Trusted reports whether name is in a trusted zone (for Blocker.Skip).
func (r *Router) Trusted(name string) bool {
	rt := r.route(name)
	return rt != nil && rt.Trusted
}

// LocallyServedZones are the zones that must never reach public resolvers (RFC 6303 reverse
// zones of private, CGNAT, link-local and loopback addresses; RFC 8375 home.arpa; RFC 6761
// special-use names). mDNS's "local" is included: unicast DNS has no answer for it. "localhost" is
// not: stub resolvers answer it, and RFC 6761 wants loopback addresses, not NXDOMAIN.
func LocallyServedZones() []string {
	zones := []string{
		"10.in-addr.arpa.", "168.192.in-addr.arpa.", "254.169.in-addr.arpa.", "127.in-addr.arpa.", "0.in-addr.arpa.",
		"d.f.ip6.arpa.", "c.f.ip6.arpa.", "8.e.f.ip6.arpa.", "9.e.f.ip6.arpa.", "a.e.f.ip6.arpa.", "b.e.f.ip6.arpa.",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
		"home.arpa.", "local.", "invalid.", "test.",
	}
	for i := 16; i <= 31; i++ {
		zones = append(zones, strconv.Itoa(i)+".172.in-addr.arpa.")
	}
	for i := 64; i <= 127; i++ {
		zones = append(zones, strconv.Itoa(i)+".100.in-addr.arpa.")
	}
	return zones
}

// LocalNXDOMAIN answers every query NXDOMAIN with a SOA for its zone, as RFC 6303 servers do.
func LocalNXDOMAIN(zone string) Resolver {
	zone = dns.Fqdn(zone)
	return ResolverFunc(func(_ context.Context, req *Request) (*Response, error) {
		m := new(dns.Msg)
		m.SetRcode(req.Msg, dns.RcodeNameError)
		m.Authoritative = true
		m.Ns = []dns.RR{&dns.SOA{
			Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
			Ns:  zone, Mbox: "nobody.invalid.", Serial: 1, Refresh: 604800, Retry: 86400, Expire: 2419200, Minttl: 3600,
		}}
		return &Response{Msg: m, Outcome: OutcomeForwarded}, nil
	})
}

// RebindingList is the list name reported for answers dropped by rebinding protection.
const RebindingList = "rebinding-protection"

// RebindingGuard wraps a resolver of public upstreams: an answer that puts a public name on a
// private, loopback, link-local or CGNAT address (DNS rebinding) is replaced by NXDOMAIN and
// reported as blocked by RebindingList. Conditionally forwarded zones do not pass through it.
func RebindingGuard(next Resolver, allowed func(name string) bool) Resolver {
	return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
		resp, err := next.Resolve(ctx, req)
		if err != nil || resp == nil || resp.Msg == nil || (allowed != nil && allowed(req.Question().Name)) {
			return resp, err
		}
		for _, rr := range resp.Msg.Answer {
			var ip []byte
			switch rr := rr.(type) {
			case *dns.A:
				ip = rr.A
			case *dns.AAAA:
				ip = rr.AAAA
			default:
				continue
			}
			if a, ok := netip.AddrFromSlice(ip); ok && isInternal(a.Unmap()) {
				m := new(dns.Msg)
				m.SetRcode(req.Msg, dns.RcodeNameError)
				return &Response{Msg: m, Outcome: OutcomeBlocked, List: RebindingList, Rule: a.Unmap().String(), Record: rr.String()}, nil
			}
		}
		return resp, nil
	})
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func isInternal(a netip.Addr) bool {
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || cgnat.Contains(a)
}
