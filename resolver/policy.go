package resolver

import (
	"context"
	"net/netip"
	"slices"
	"time"
)

// Group is the blocking policy for a set of clients.
type Group struct {
	// Name is a bounded metric label (groups come from the config).
	Name string
	// Lists selects the lists that apply to the group (Matcher.MatchIn).
	Lists uint64
	// LogOnly answers normally and only records what would have been blocked (shadow mode).
	LogOnly bool
	// Exemptions let some lists or apps through until they expire.
	Exemptions []Exemption
}

// Exemption lets a list's or an app's names through for a group until Until.
type Exemption struct {
	List, App string // one of them
	Until     time.Time
	Reason    string
}

// exempt returns the exemption that covers a match of list (filed under app) at now, if any.
func (g *Group) exempt(list, app string, now time.Time) *Exemption {
	for i := range g.Exemptions {
		e := &g.Exemptions[i]
		if now.Before(e.Until) && (e.List != "" && e.List == list || e.App != "" && e.App == app) {
			return e
		}
	}
	return nil
}

// Groups maps client addresses to groups: the group of the longest matching prefix, else Default.
type Groups struct {
	Default *Group
	nets    []groupNet
}

type groupNet struct {
	prefix netip.Prefix
	group  *Group
}

// Add assigns the clients in p to g.
func (gs *Groups) Add(p netip.Prefix, g *Group) {
	gs.nets = append(gs.nets, groupNet{p.Masked(), g})
	// Longest prefix first, so For can return the first hit.
	slices.SortStableFunc(gs.nets, func(a, b groupNet) int { return b.prefix.Bits() - a.prefix.Bits() })
}

// For returns the group of client.
func (gs *Groups) For(client netip.Addr) *Group {
	client = client.Unmap()
	for _, n := range gs.nets {
		if n.prefix.Contains(client) {
			return n.group
		}
	}
	return gs.Default
}

// Policy tags each request with its client's group, which later stages (block, metrics) use.
func Policy(gs *Groups) Middleware {
	return func(next Resolver) Resolver {
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			req.Group = gs.For(req.Client)
			return next.Resolve(ctx, req)
		})
	}
}
