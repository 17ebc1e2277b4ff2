package configs

import (
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
)

// ListenTransports are the transports the configured listeners take queries on, for the
// queries_total series created at start.
func (c *Config) ListenTransports() []resolver.Transport {
	seen := map[resolver.Transport]bool{}
	var out []resolver.Transport
	add := func(t resolver.Transport) {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	for _, l := range c.Listen {
		switch {
		case strings.HasPrefix(l, "tls://"):
			add(resolver.DoT)
		case strings.HasPrefix(l, "https://"):
			add(resolver.DoH)
		default:
			add(resolver.UDP)
			add(resolver.TCP)
		}
	}
	return out
}

// BlockedRcode is the rcode of the default sinkhole mode's answers.
func (c *Config) BlockedRcode() int {
	switch strings.ToLower(c.Blocking.Mode) {
	case "refused":
		return dns.RcodeRefused
	case "null", "custom":
		return dns.RcodeSuccess
	}
	return dns.RcodeNameError
}
