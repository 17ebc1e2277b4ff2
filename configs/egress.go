package configs

import (
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/egress"
)

// EgressConfig is the egress: section: nftables sets (and optionally rules) that block by
// address what the name lists block by name. Every key is optional; zero values mean the
// defaults documented in README.md ("Egress enforcement on a router").
type EgressConfig struct {
	Enabled bool   `yaml:"enabled"`
	Table   string `yaml:"table"` // "": dnsfence (family inet)
	// LANInterfaces and LANPrefixes say which clients the rules cover (either matches).
	LANInterfaces []string `yaml:"lan_interfaces"`
	LANPrefixes   []string `yaml:"lan_prefixes"`
	// IPLists are admin address lists: path, url or builtin, like blocklists (name required).
	IPLists []ListConfig `yaml:"ip_lists"`
	// Learn adds the addresses of blocked names, resolved in the background.
	Learn       bool          `yaml:"learn"`
	LearnMinTTL time.Duration `yaml:"learn_min_ttl"` // 0: 5m
	LearnMaxTTL time.Duration `yaml:"learn_max_ttl"` // 0: 24h
	// Rules installs the filter (and nat) chains; without it only sets and counters exist.
	Rules    bool   `yaml:"rules"`
	ForceDNS string `yaml:"force_dns"` // redirect, drop, off ("": off)
	Action   string `yaml:"action"`    // drop, reject ("": drop)
	// DNSPort is where force_dns: redirect sends LAN DNS; 0: the port of the first plain listen address.
	DNSPort int `yaml:"dns_port"`
	// Cleanup deletes the table when dnsfence exits; by default it stays (and keeps blocking).
	Cleanup bool `yaml:"cleanup"`
}

func (e EgressConfig) table() string {
	if e.Table == "" {
		return "dnsfence"
	}
	return e.Table
}

func (e EgressConfig) ForceDNSMode() string {
	if e.ForceDNS == "" {
		return egress.ForceOff
	}
	return e.ForceDNS
}

// dnsPort is where force_dns redirect sends LAN DNS.
func (c *Config) egressDNSPort() uint16 {
	if c.Egress.DNSPort != 0 {
		return uint16(c.Egress.DNSPort)
	}
	for _, l := range c.Listen {
		if ls, err := ParseListen(l); err == nil && ls.Transport == resolver.UDP {
			return ls.Addr.Port()
		}
	}
	return 53
}

// listensOffLoopback reports whether a plain DNS listen address can take redirected LAN DNS.
func (c *Config) listensOffLoopback() bool {
	for _, l := range c.Listen {
		if ls, err := ParseListen(l); err == nil && ls.Transport == resolver.UDP && !ls.Addr.Addr().IsLoopback() {
			return true
		}
	}
	return false
}

// validateEgress checks the egress: section.
func (c *Config) validateEgress() []error {
	e := c.Egress
	var errs []error
	if !e.Enabled {
		return nil
	}
	if t := e.table(); egress.SetName(t) != t || len(t) > 64 {
		errs = append(errs, c.problem("egress.table", "%q: use letters, digits and underscores", t))
	}
	for i, n := range e.LANInterfaces {
		if n == "" || len(n) > 15 {
			errs = append(errs, c.problem(fmt.Sprintf("egress.lan_interfaces[%d]", i), "%q is not an interface name (1 to 15 characters)", n))
		}
	}
	for i, s := range e.LANPrefixes {
		if _, err := ParsePrefixOrAddr(s); err != nil {
			errs = append(errs, c.problem(fmt.Sprintf("egress.lan_prefixes[%d]", i), "%q is not a CIDR prefix or address", s))
		}
	}
	if e.Rules && len(e.LANInterfaces) == 0 && len(e.LANPrefixes) == 0 {
		errs = append(errs, c.problem("egress.rules", "rules need egress.lan_interfaces or egress.lan_prefixes (which clients to filter)"))
	}
	switch e.ForceDNSMode() {
	case egress.ForceRedirect, egress.ForceDrop, egress.ForceOff:
	default:
		errs = append(errs, c.problem("egress.force_dns", "%q: want redirect, drop or off", e.ForceDNS))
	}
	if e.ForceDNS != "" && e.ForceDNSMode() != egress.ForceOff && !e.Rules {
		errs = append(errs, c.problem("egress.force_dns", "needs egress.rules: true"))
	}
	if e.ForceDNSMode() == egress.ForceRedirect && !c.listensOffLoopback() {
		errs = append(errs, c.problem("egress.force_dns", "redirect sends LAN DNS to the router's LAN address, but dnsfence listens on loopback only: add the LAN address (e.g. 192.168.1.1:53) to listen"))
	}
	switch e.Action {
	case "", "drop", "reject":
	default:
		errs = append(errs, c.problem("egress.action", "%q: want drop or reject", e.Action))
	}
	if e.DNSPort < 0 || e.DNSPort > 65535 {
		errs = append(errs, c.problem("egress.dns_port", "%d is not a port", e.DNSPort))
	}
	if e.LearnMinTTL < 0 || e.LearnMaxTTL < 0 || e.LearnMaxTTL != 0 && e.LearnMaxTTL < e.LearnMinTTL {
		errs = append(errs, c.problem("egress.learn_max_ttl", "want 0 <= learn_min_ttl <= learn_max_ttl"))
	}
	names := map[string]bool{}
	for _, id := range c.Apps {
		names[id] = true
	}
	for i, l := range e.IPLists {
		p := fmt.Sprintf("egress.ip_lists[%d]", i)
		set := 0
		for _, v := range []string{l.Path, l.URL, l.Builtin} {
			if v != "" {
				set++
			}
		}
		switch {
		case l.Name == "":
			errs = append(errs, c.problem(p, "name is required"))
		case names[l.Name] || l.Name == "blocked_nets" || l.Name == "learned" || l.Name == "doh":
			errs = append(errs, c.problem(p+".name", "duplicate or reserved list name %q", l.Name))
		case set != 1:
			errs = append(errs, c.problem(p, "set exactly one of path, url and builtin"))
		case l.Builtin != "":
			if _, err := fs.Stat(Lists(), BuiltinIPPath(l.Builtin)); err != nil {
				errs = append(errs, c.problem(p+".builtin", "no built-in address list %q", l.Builtin))
			}
		}
		if l.App != "" && !IsApp(l.App) {
			errs = append(errs, c.problem(p+".app", "%q is not a curated app id", l.App))
		}
		names[l.Name] = true
	}
	return errs
}

// EgressFetcher downloads URL ip_lists into their own cache directory (a Fetcher owns its
// directory, and vets downloads as address lists).
func (c *Config) EgressFetcher(userAgent string) *blocklist.Fetcher {
	f := c.Fetcher(userAgent)
	f.CacheDir = filepath.Join(c.CacheDir(), "egress")
	f.Check = blocklist.CheckIPList
	return f
}

// EgressSources are the address lists: the enabled apps' curated addresses, the DoH resolvers
// when the doh-bypass list is on, then egress.ip_lists.
func (cfg *Config) EgressSources(f *blocklist.Fetcher) []blocklist.Source {
	var out []blocklist.Source
	for _, id := range cfg.Apps {
		p := AppIPPath(id)
		if _, err := fs.Stat(Lists(), p); err == nil {
			out = append(out, blocklist.Source{Name: id, Category: "apps", Path: p, FS: Lists()})
		}
	}
	if cfg.DoHEnabled() {
		out = append(out, blocklist.Source{Name: "doh", Category: "doh-bypass", Path: BuiltinIPPath("doh-bypass"), FS: Lists()})
	}
	for _, l := range cfg.Egress.IPLists {
		out = append(out, l.source(f, BuiltinIPPath))
	}
	return out
}

// DoHEnabled reports whether the built-in doh-bypass name list is on (its addresses then go
// into the doh set, blocked on 443).
func (cfg *Config) DoHEnabled() bool {
	for _, l := range cfg.Blocklists {
		if l.Builtin == "doh-bypass" {
			if _, err := fs.Stat(Lists(), BuiltinIPPath("doh-bypass")); err == nil {
				return true
			}
		}
	}
	return false
}

// EgressRuleset turns the config and the loaded address lists into the ruleset's input, with
// the groups' policies as of now; next is when an exemption ends (zero: none), after which it
// must be built again.
func (cfg *Config) EgressRuleset(ips *blocklist.IPSet, now time.Time) (_ egress.Config, next time.Time) {
	e := cfg.Egress
	out := egress.Config{
		Table: e.table(), Rules: e.Rules, Reject: e.Action == "reject", ForceDNS: e.ForceDNSMode(),
		DNSPort: cfg.egressDNSPort(), LANInterfaces: e.LANInterfaces,
	}
	for _, s := range e.LANPrefixes {
		if p, err := ParsePrefixOrAddr(s); err == nil {
			out.LANPrefixes = append(out.LANPrefixes, p)
		}
	}
	out.LANPrefixes = blocklist.NormalizePrefixes(out.LANPrefixes)
	apps := map[string]string{}
	for _, l := range e.IPLists {
		apps[l.Name] = l.App
	}
	for _, l := range ips.Lists() {
		src := egress.Source{Name: l.Name, Kind: egress.KindList, App: apps[l.Name], Origin: l.Origin, Prefixes: l.Prefixes}
		switch {
		case l.Category == "apps":
			src.Kind, src.App = egress.KindApp, l.Name
		case l.Name == "doh" && l.Category == "doh-bypass":
			src.Kind = egress.KindDoH
		}
		out.Sources = append(out.Sources, src)
	}
	if nets, _ := cfg.BlockedNets(); len(nets) > 0 {
		out.Sources = append(out.Sources, egress.Source{Name: "blocked_nets", Kind: egress.KindBlockedNets,
			Origin: "blocking.blocked_nets", Prefixes: blocklist.NormalizePrefixes(append([]netip.Prefix(nil), nets...))})
	}
	if e.Learn {
		// One learned set per app (so drops count per app and an exemption can let one app's
		// learned addresses through), and one for names of lists without an app.
		out.Sources = append(out.Sources, egress.Source{Name: "learned", Kind: egress.KindLearned, Origin: "addresses of blocked names"})
		for _, id := range cfg.Apps {
			out.Sources = append(out.Sources, egress.Source{Name: "learned-" + id, Kind: egress.KindLearned, App: id,
				Origin: "addresses of blocked names of app " + id})
		}
	}
	out.Groups, next = egressGroups(cfg, out.Sources, now)
	return out, next
}

// egressGroups are the client groups as packet policy: log-only groups are counted, not
// blocked; a group's clients may reach the addresses of the apps it does not block and of its
// active exemptions (by app, or by list: an ip_list of that name, an app's lists, blocked-nets).
// Groups are tried most specific first (by their longest client prefix), an approximation of
// the DNS policy's longest-prefix match when a group's prefixes differ in length.
func egressGroups(cfg *Config, sources []egress.Source, now time.Time) (groups []egress.Group, next time.Time) {
	byApp := func(app string) []string {
		var out []string
		for _, s := range sources {
			if s.App == app {
				out = append(out, s.Name)
			}
		}
		return out
	}
	for _, gc := range cfg.Groups {
		g := egress.Group{Name: gc.Name, LogOnly: gc.Mode == "log-only"}
		if gc.Name != "default" {
			for _, cl := range gc.Clients {
				if p, err := ParsePrefixOrAddr(cl); err == nil {
					g.Prefixes = append(g.Prefixes, p)
				}
			}
		}
		if gc.Apps != nil {
			for _, id := range cfg.Apps {
				if !slices.Contains(gc.Apps, id) {
					g.Exempt = append(g.Exempt, byApp(id)...)
				}
			}
		}
		for _, e := range gc.Exemptions {
			until, err := time.Parse(time.RFC3339, e.Until)
			if err != nil || !now.Before(until) {
				continue
			}
			if next.IsZero() || until.Before(next) {
				next = until
			}
			switch {
			case e.App != "":
				g.Exempt = append(g.Exempt, byApp(e.App)...)
			case e.List == resolver.BlockedNetsList:
				g.Exempt = append(g.Exempt, "blocked_nets")
			case IsApp(e.List):
				g.Exempt = append(g.Exempt, byApp(e.List)...)
			default:
				g.Exempt = append(g.Exempt, e.List) // an ip_list of the same name, if any
			}
		}
		slices.Sort(g.Exempt)
		g.Exempt = slices.Compact(g.Exempt)
		groups = append(groups, g)
	}
	longest := func(g egress.Group) int {
		n := -1
		for _, p := range g.Prefixes {
			n = max(n, p.Bits()+128-p.Addr().BitLen())
		}
		return n
	}
	slices.SortStableFunc(groups, func(a, b egress.Group) int { return longest(b) - longest(a) })
	return groups, next
}
