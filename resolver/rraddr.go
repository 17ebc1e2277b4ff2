package resolver

import (
	"net/netip"

	"github.com/miekg/dns"
)

// RRAddr is the address an A or AAAA record carries, IPv4-mapped addresses unmapped; false for
// any other record or a malformed address. Stages that look at answers (egress learning, the
// history's device names) read addresses through it.
func RRAddr(rr dns.RR) (netip.Addr, bool) {
	var a netip.Addr
	var ok bool
	switch rr := rr.(type) {
	case *dns.A:
		a, ok = netip.AddrFromSlice(rr.A)
	case *dns.AAAA:
		a, ok = netip.AddrFromSlice(rr.AAAA)
	}
	return a.Unmap(), ok && a.IsValid()
}
