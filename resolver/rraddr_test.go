package resolver_test

import (
	"net"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
)

func TestRRAddr(t *testing.T) {
	hdr := dns.RR_Header{Name: "x.example.", Class: dns.ClassINET, Ttl: 60}
	for _, tc := range []struct {
		rr   dns.RR
		want string
	}{
		{&dns.A{Hdr: hdr, A: net.ParseIP("192.0.2.7")}, "192.0.2.7"},
		{&dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::7")}, "2001:db8::7"},
		{&dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("::ffff:192.0.2.8")}, "192.0.2.8"}, // mapped: one address, one form
		{&dns.A{Hdr: hdr, A: net.IP{1, 2}}, ""},                                   // malformed
		{&dns.CNAME{Hdr: hdr, Target: "y.example."}, ""},
	} {
		a, ok := resolver.RRAddr(tc.rr)
		if got := map[bool]string{true: a.String(), false: ""}[ok]; got != tc.want {
			t.Errorf("RRAddr(%v) = %q, want %q", tc.rr, got, tc.want)
		}
	}
}
