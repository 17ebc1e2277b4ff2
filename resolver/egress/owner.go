package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// The two startup failures an admin can fix, with how.
var (
	ErrNoCapability = errors.New("egress: no permission to change nftables (CAP_NET_ADMIN missing): " +
		"add AmbientCapabilities=CAP_NET_ADMIN and CapabilityBoundingSet=CAP_NET_ADMIN (see configs/systemd/egress.conf, a systemd drop-in) or run as root")
	ErrNoNFTables = errors.New("egress: the kernel has no nf_tables: load it (modprobe nf_tables; on OpenWrt install kmod-nft-core, " +
		"kmod-nft-nat and kmod-nft-reject) or set egress.enabled: false")
	// ErrUnsupported is returned by Start and Check where there is no nftables backend.
	ErrUnsupported = errors.New("egress needs Linux (nftables); set egress.enabled: false on this platform")
)

// Options configure an Owner.
type Options struct {
	// NetNSFd, if non-zero, is the network namespace to own the table in (tests).
	NetNSFd int
	// Cleanup deletes the table on Close; otherwise it is left in place (its rules keep working
	// while dnsfence restarts).
	Cleanup bool
	// OnUpdate is called by the owner goroutine when an update fails (err != nil) and when the
	// next one succeeds again (err == nil). It must not block.
	OnUpdate func(err error)
	// OnLearned counts learned addresses added and refreshed; OnExpired those timed out.
	OnLearned func(added, refreshed int)
	OnExpired func(n int)
}

// Counter is one named nft counter.
type Counter struct{ Packets, Bytes uint64 }

// Hit explains why an address is blocked.
type Hit struct {
	Set     string // the nft set
	Source  string
	Kind    Kind
	App     string
	Origin  string
	Prefix  netip.Prefix
	Expires time.Time // learned elements only
}

func (h Hit) String() string {
	s := fmt.Sprintf("%s in set %s (%s %q", h.Prefix, h.Set, h.Kind, h.Source)
	if h.App != "" {
		s += ", app " + h.App
	}
	if h.Origin != "" {
		s += ", from " + h.Origin
	}
	if !h.Expires.IsZero() {
		s += fmt.Sprintf(", expires in %s", time.Until(h.Expires).Round(time.Second))
	}
	return s + ")"
}

// Explain reports the static sets of rs that hold a (learned elements need the Owner).
func Explain(rs *Ruleset, a netip.Addr) []Hit { return explainStatic(rs, a) }

func explainStatic(rs *Ruleset, a netip.Addr) []Hit {
	a = a.Unmap()
	var hits []Hit
	for _, s := range rs.Sets {
		if s.Source == "" {
			continue
		}
		for _, p := range s.Prefixes {
			if p.Contains(a) {
				src, _ := rs.SourceNamed(s.Name)
				hits = append(hits, Hit{Set: s.Name, Source: src.Name, Kind: src.Kind, App: src.App, Origin: src.Origin, Prefix: p})
				break
			}
		}
	}
	return hits
}

// structure is rs without set contents: two rulesets with the same structure differ only in
// elements, which can be replaced set by set.
func structure(rs *Ruleset) string {
	c := *rs
	c.Sources = nil
	c.Sets = slices.Clone(rs.Sets)
	for i := range c.Sets {
		c.Sets[i].Prefixes = nil
	}
	return fmt.Sprintf("%+v", c)
}

func prefixesEqual(a, b []netip.Prefix) bool { return slices.Equal(a, b) }
