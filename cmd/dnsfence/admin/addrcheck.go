package admin

import (
	"net/netip"
	"time"

	"github.com/dnsfence/dnsfence/resolver/egress"
)

// AddrCheck is the answer of /api/check?ip= and of dnsfence check ADDR: the egress sets that
// hold the address.
type AddrCheck struct {
	IP      string    `json:"ip"`
	Blocked bool      `json:"blocked"`
	Sets    []AddrHit `json:"sets"`
}

// AddrHit is one set holding the address, with the source and (learned) expiry.
type AddrHit struct {
	Set     string     `json:"set"`
	Source  string     `json:"source"`
	Kind    string     `json:"kind"`
	App     string     `json:"app,omitempty"`
	Origin  string     `json:"origin,omitempty"`
	Prefix  string     `json:"prefix"`
	Expires *time.Time `json:"expires,omitempty"`
}

// ExplainAddr turns the egress owner's hits for a into the /api/check?ip= answer.
func ExplainAddr(a netip.Addr, hits []egress.Hit) AddrCheck {
	res := AddrCheck{IP: a.String(), Blocked: len(hits) > 0, Sets: []AddrHit{}}
	for _, h := range hits {
		c := AddrHit{Set: h.Set, Source: h.Source, Kind: h.Kind.String(), App: h.App, Origin: h.Origin, Prefix: h.Prefix.String()}
		if !h.Expires.IsZero() {
			c.Expires = &h.Expires
		}
		res.Sets = append(res.Sets, c)
	}
	return res
}
