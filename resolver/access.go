package resolver

import (
	"context"
	"net/netip"

	"github.com/miekg/dns"
)

// DefaultAllowedNets are the client networks served by default: loopback, RFC 1918, RFC 6598
// (carrier-grade NAT), link-local and IPv6 ULA. Anything else must be allowed explicitly, so a
// listener exposed to the internet by mistake is not an open resolver.
func DefaultAllowedNets() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"127.0.0.0/8", "::1/128",
		"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
		"100.64.0.0/10",
		"169.254.0.0/16", "fe80::/10",
		"fc00::/7",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// AllowsAll reports whether nets admit every IPv4 or every IPv6 client.
func AllowsAll(nets []netip.Prefix) bool {
	for _, p := range nets {
		if p.Bits() == 0 {
			return true
		}
	}
	return false
}

// Access answers clients outside allow with REFUSED, or with nothing when drop is set (a
// refusal still reflects a packet at a spoofed victim, silence does not).
func Access(allow []netip.Prefix, drop bool) Middleware {
	return func(next Resolver) Resolver {
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			client := req.Client.Unmap()
			for _, p := range allow {
				if p.Contains(client) {
					return next.Resolve(ctx, req)
				}
			}
			m := new(dns.Msg)
			m.SetRcode(req.Msg, dns.RcodeRefused)
			return &Response{Msg: m, Outcome: OutcomeRefused, Drop: drop}, nil
		})
	}
}
