// Package egress enforces dnsfence's policy on packets: it keeps an nftables table (default
// "inet dnsfence") whose sets hold the addresses of blocked apps, admin IP lists, blocked_nets,
// DoH resolvers and addresses learned from blocked names, and whose rules drop or reject LAN
// traffic to them and force LAN DNS through dnsfence.
//
// One description (Ruleset, built by Build) is both rendered as nft text (Render, for
// `dnsfence egress rules`) and applied over netlink by the Owner, so the two cannot drift. The
// Owner is the only code that talks to the kernel; it never touches another table and never
// shells out to nft. The DNS path never waits on it: updates are queued and a failed update is
// reported, not returned to a query. Runtime ties the Owner, the Learner and the address lists
// together for the program, from a Plan it derives from each config: this package never reads
// the config itself.
package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Kind is where a set's addresses come from.
type Kind uint8

// Kinds of address sources.
const (
	KindApp         Kind = iota // a curated per-app list
	KindList                    // an admin ip_lists entry
	KindBlockedNets             // blocking.blocked_nets
	KindLearned                 // addresses of blocked names, learned at run time
	KindDoH                     // DoH resolvers (blocked on 443 only)
)

var kindNames = [...]string{"app", "list", "blocked_nets", "learned", "doh"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Source is one named group of blocked addresses; it becomes an IPv4 and an IPv6 set sharing
// one named counter.
type Source struct {
	Name     string // unique; a metric label ("qq", an ip_lists name, "blocked_nets", "learned", "doh")
	Kind     Kind
	App      string // the curated app it counts for, if any
	Origin   string // where the addresses come from, for check
	Prefixes []netip.Prefix
}

// Config is what a Ruleset is built from.
type Config struct {
	Table         string // nft table name, family inet
	Rules         bool   // install the filter (and nat) chains; false: sets and counters only
	Reject        bool   // reject (TCP reset / ICMP admin-prohibited) instead of drop
	ForceDNS      string // "redirect", "drop" or "off"
	DNSPort       uint16 // where force_dns redirect sends LAN DNS
	LANInterfaces []string
	LANPrefixes   []netip.Prefix
	Sources       []Source
	// Groups are the client groups whose policy is not plain blocking, most specific first;
	// a group without prefixes is the default group (every other client).
	Groups []Group
}

// Group is a client group's packet policy: log-only clients are counted but not blocked, and
// exempt sources' addresses are let through (active exemptions only: the caller rebuilds the
// ruleset when one expires).
type Group struct {
	Name     string
	Prefixes []netip.Prefix
	LogOnly  bool
	Exempt   []string // Source names
}

// Counters of the group policies.
const (
	CounterExempt  = "policy_exempt"   // packets let through by an exemption
	CounterLogOnly = "policy_log_only" // packets of log-only clients that would have been blocked
)

// Action modes.
const (
	ForceRedirect = "redirect"
	ForceDrop     = "drop"
	ForceOff      = "off"
)

// Well-known counters besides the per-source ones.
const (
	CounterDNS = "dns" // LAN DNS to another resolver, redirected or dropped
	CounterDoT = "dot" // LAN DNS over TLS, dropped
)

// SetType is an nft set key type.
type SetType uint8

// Set key types.
const (
	TypeIPv4 SetType = iota
	TypeIPv6
	TypeIfname
)

// Set is one named nft set.
type Set struct {
	Name     string
	Type     SetType
	Interval bool // prefixes; false only for ifname sets
	Timeout  bool // elements may carry a timeout (learned addresses)
	Source   string
	Prefixes []netip.Prefix // IPv4 or IPv6 by Type, non-overlapping
	Ifnames  []string
}

// MatchKind is a rule's condition.
type MatchKind uint8

// Matches.
const (
	MatchIIF     MatchKind = iota // input interface in Set
	MatchSaddr                    // source address in Set (family from V6)
	MatchDaddr                    // destination address in Set
	MatchL4Proto                  // layer 4 protocol is Proto
	MatchDport                    // transport destination port is Port (after a MatchL4Proto)
)

// Match is one condition of a rule.
type Match struct {
	Kind  MatchKind
	Set   string
	V6    bool
	Proto uint8
	Port  uint16
}

// VerdictKind is what a rule does.
type VerdictKind uint8

// Verdicts.
const (
	Drop        VerdictKind = iota
	RejectTCP               // TCP reset
	RejectICMPX             // ICMP(v6) administratively prohibited
	Jump
	Redirect // to the local Port (nat)
	Accept
	Goto
	Continue // no verdict: the rule only counts
)

// Verdict ends a rule.
type Verdict struct {
	Kind  VerdictKind
	Chain string // Jump, Goto
	Port  uint16 // Redirect
}

// Rule is a list of matches, an optional named counter and a verdict.
type Rule struct {
	Match   []Match
	Counter string
	Verdict Verdict
}

// Hook makes a chain a base chain.
type Hook struct {
	Type     string // "filter" or "nat"
	Hook     string // "forward", "output", "prerouting"
	Priority int
}

// Chain is one nft chain; Hook nil means a regular chain (reached by jumps).
type Chain struct {
	Name  string
	Hook  *Hook
	Rules []Rule
}

// Ruleset is the whole table dnsfence owns.
type Ruleset struct {
	Table    string
	Counters []string
	Sets     []Set
	Chains   []Chain
	// Sources are the address sources the sets were built from, for metrics and check.
	Sources []Source
}

// Protocol numbers used by the rules.
const (
	protoTCP = 6
	protoUDP = 17
)

// Set and chain names.
const (
	setLANIfs = "lan_ifs"
	setLANv4  = "lan_v4"
	setLANv6  = "lan_v6"
)

// Build turns cfg into the table's description. Source names must be unique.
func Build(cfg Config) (*Ruleset, error) {
	if cfg.Table == "" {
		return nil, errors.New("egress: empty table name")
	}
	rs := &Ruleset{Table: cfg.Table, Sources: cfg.Sources}
	seen := map[string]bool{}
	var enforce, lan []Rule
	var logOnly []Rule // what a log-only client's packet is counted against
	for i := range cfg.Sources {
		src := &cfg.Sources[i]
		name := SetName(src.Name)
		if seen[name] {
			return nil, fmt.Errorf("egress: two address sources named %q", name)
		}
		seen[name] = true
		rs.Counters = append(rs.Counters, name)
		v4, v6 := splitFamilies(src.Prefixes)
		for _, fam := range []struct {
			v6 bool
			ps []netip.Prefix
		}{{false, v4}, {true, v6}} {
			set := Set{Name: name + "_v4", Type: TypeIPv4, Interval: true, Timeout: true, Source: src.Name, Prefixes: fam.ps}
			if fam.v6 {
				set.Name, set.Type = name+"_v6", TypeIPv6
			}
			rs.Sets = append(rs.Sets, set)
			m := Match{Kind: MatchDaddr, Set: set.Name, V6: fam.v6}
			if src.Kind == KindDoH {
				lan = append(lan, verdictRules(cfg.Reject, name, m, Match{Kind: MatchL4Proto, Proto: protoTCP}, Match{Kind: MatchDport, Port: 443})...)
				continue
			}
			enforce = append(enforce, verdictRules(cfg.Reject, name, m)...)
			logOnly = append(logOnly, Rule{Match: []Match{m}, Counter: CounterLogOnly, Verdict: Verdict{Kind: Continue}})
		}
	}
	if !cfg.Rules {
		return rs, nil
	}
	if len(cfg.LANInterfaces) == 0 && len(cfg.LANPrefixes) == 0 {
		return nil, errors.New("egress: rules need lan_interfaces or lan_prefixes")
	}
	// Which packets come from the LAN: the interface sets and prefix sets, each a jump.
	lanV4, lanV6 := splitFamilies(cfg.LANPrefixes)
	var fromLAN []Match
	if len(cfg.LANInterfaces) > 0 {
		rs.Sets = append(rs.Sets, Set{Name: setLANIfs, Type: TypeIfname, Ifnames: slices.Clone(cfg.LANInterfaces)})
		fromLAN = append(fromLAN, Match{Kind: MatchIIF, Set: setLANIfs})
	}
	if len(lanV4) > 0 {
		rs.Sets = append(rs.Sets, Set{Name: setLANv4, Type: TypeIPv4, Interval: true, Prefixes: lanV4})
		fromLAN = append(fromLAN, Match{Kind: MatchSaddr, Set: setLANv4})
	}
	if len(lanV6) > 0 {
		rs.Sets = append(rs.Sets, Set{Name: setLANv6, Type: TypeIPv6, Interval: true, Prefixes: lanV6})
		fromLAN = append(fromLAN, Match{Kind: MatchSaddr, Set: setLANv6, V6: true})
	}
	jumps := func(chain string) []Rule {
		var out []Rule
		for _, m := range fromLAN {
			out = append(out, Rule{Match: []Match{m}, Verdict: Verdict{Kind: Jump, Chain: chain}})
		}
		return out
	}
	var lanRules []Rule
	if cfg.ForceDNS == ForceDrop {
		rs.Counters = append(rs.Counters, CounterDNS)
		for _, p := range []uint8{protoUDP, protoTCP} {
			lanRules = append(lanRules, Rule{Match: []Match{{Kind: MatchL4Proto, Proto: p}, {Kind: MatchDport, Port: 53}},
				Counter: CounterDNS, Verdict: Verdict{Kind: Drop}})
		}
	}
	if cfg.ForceDNS != ForceOff {
		rs.Counters = append(rs.Counters, CounterDoT)
		lanRules = append(lanRules, verdictRules(cfg.Reject, CounterDoT, Match{Kind: MatchL4Proto, Proto: protoTCP}, Match{Kind: MatchDport, Port: 853})...)
	}
	lanRules = append(lanRules, lan...)
	lanRules = append(lanRules, Rule{Verdict: Verdict{Kind: Jump, Chain: "block"}})
	block, groupChains, err := groupRules(rs, cfg.Groups, logOnly)
	if err != nil {
		return nil, err
	}
	rs.Chains = append(rs.Chains,
		Chain{Name: "forward", Hook: &Hook{Type: "filter", Hook: "forward", Priority: 0}, Rules: jumps("lan")},
		Chain{Name: "output", Hook: &Hook{Type: "filter", Hook: "output", Priority: 0},
			Rules: []Rule{{Verdict: Verdict{Kind: Jump, Chain: "block"}}}},
		Chain{Name: "lan", Rules: lanRules},
		Chain{Name: "block", Rules: block},
	)
	rs.Chains = append(rs.Chains, groupChains...)
	rs.Chains = append(rs.Chains, Chain{Name: "enforce", Rules: enforce})
	if cfg.ForceDNS == ForceRedirect {
		if cfg.DNSPort == 0 {
			return nil, errors.New("egress: force_dns redirect needs dnsfence's DNS port")
		}
		rs.Counters = append(rs.Counters, CounterDNS)
		var redir []Rule
		for _, p := range []uint8{protoUDP, protoTCP} {
			redir = append(redir, Rule{Match: []Match{{Kind: MatchL4Proto, Proto: p}, {Kind: MatchDport, Port: 53}},
				Counter: CounterDNS, Verdict: Verdict{Kind: Redirect, Port: cfg.DNSPort}})
		}
		rs.Chains = append(rs.Chains,
			Chain{Name: "prerouting", Hook: &Hook{Type: "nat", Hook: "prerouting", Priority: -100}, Rules: jumps("dns_redirect")},
			Chain{Name: "dns_redirect", Rules: redir},
		)
	}
	return rs, nil
}

// groupRules builds the block chain: clients of a group with a policy go to its chain (goto: when
// it returns, the packet is done with block), the default group's policy applies inline, then
// everything else is enforced.
func groupRules(rs *Ruleset, groups []Group, logOnly []Rule) (block []Rule, chains []Chain, err error) {
	var def *Group
	for i := range groups {
		if len(groups[i].Prefixes) == 0 {
			def = &groups[i]
		}
	}
	policy := func(g *Group) []Rule {
		var out []Rule
		for _, name := range g.Exempt {
			src, ok := rs.SourceNamed(SetName(name))
			if !ok || src.Kind == KindDoH {
				continue
			}
			for _, fam := range []string{"_v4", "_v6"} {
				m := Match{Kind: MatchDaddr, Set: SetName(name) + fam, V6: fam == "_v6"}
				out = append(out, Rule{Match: []Match{m}, Counter: CounterExempt, Verdict: Verdict{Kind: Accept}})
			}
		}
		if g.LogOnly {
			out = append(out, logOnly...)
			out = append(out, Rule{Verdict: Verdict{Kind: Accept}})
		}
		return out
	}
	hasPolicy := func(g *Group) bool { return g != nil && (g.LogOnly || len(g.Exempt) > 0) }
	for i := range groups {
		g := &groups[i]
		if g == def || !hasPolicy(g) && !hasPolicy(def) {
			continue // plain blocking, like the default: no chain needed
		}
		chain := "group_" + SetName(g.Name)
		v4, v6 := splitFamilies(g.Prefixes)
		for _, fam := range []struct {
			suffix string
			ps     []netip.Prefix
			t      SetType
		}{{"_v4", v4, TypeIPv4}, {"_v6", v6, TypeIPv6}} {
			set := groupSet(g.Name) + fam.suffix
			rs.Sets = append(rs.Sets, Set{Name: set, Type: fam.t, Interval: true, Prefixes: fam.ps})
			if len(fam.ps) > 0 {
				block = append(block, Rule{Match: []Match{{Kind: MatchSaddr, Set: set, V6: fam.t == TypeIPv6}}, Verdict: Verdict{Kind: Goto, Chain: chain}})
			}
		}
		rules := policy(g)
		if !g.LogOnly { // a log-only chain ends in accept
			rules = append(rules, Rule{Verdict: Verdict{Kind: Jump, Chain: "enforce"}})
		}
		chains = append(chains, Chain{Name: chain, Rules: rules})
	}
	if hasPolicy(def) {
		block = append(block, policy(def)...)
	}
	for _, g := range groups {
		if len(g.Exempt) > 0 && !slices.Contains(rs.Counters, CounterExempt) {
			rs.Counters = append(rs.Counters, CounterExempt)
		}
		if g.LogOnly && !slices.Contains(rs.Counters, CounterLogOnly) {
			rs.Counters = append(rs.Counters, CounterLogOnly)
		}
	}
	block = append(block, Rule{Verdict: Verdict{Kind: Jump, Chain: "enforce"}})
	return block, chains, nil
}

func groupSet(name string) string { return "group_" + SetName(name) }

// verdictRules blocks what matches m: one drop rule, or with reject a TCP reset for TCP and an
// ICMP admin-prohibited for the rest.
func verdictRules(reject bool, counter string, m ...Match) []Rule {
	if !reject {
		return []Rule{{Match: m, Counter: counter, Verdict: Verdict{Kind: Drop}}}
	}
	hasProto := slices.ContainsFunc(m, func(x Match) bool { return x.Kind == MatchL4Proto && x.Proto == protoTCP })
	tcp := Rule{Match: m, Counter: counter, Verdict: Verdict{Kind: RejectTCP}}
	if hasProto {
		return []Rule{tcp}
	}
	tcp.Match = append([]Match{{Kind: MatchL4Proto, Proto: protoTCP}}, m...)
	return []Rule{tcp, {Match: m, Counter: counter, Verdict: Verdict{Kind: RejectICMPX}}}
}

// SetName turns a source name into an nft identifier (letters, digits, underscores).
func SetName(name string) string {
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 40 { // sets are named <name>_v4 and must stay well under the kernel's limits
		b = b[:40]
	}
	return string(b)
}

func splitFamilies(ps []netip.Prefix) (v4, v6 []netip.Prefix) {
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

// SourceNamed returns the source a set or counter belongs to.
func (rs *Ruleset) SourceNamed(name string) (Source, bool) {
	for _, s := range rs.Sources {
		if SetName(s.Name) == name || SetName(s.Name)+"_v4" == name || SetName(s.Name)+"_v6" == name {
			return s, true
		}
	}
	return Source{}, false
}

// LearnedSet is the name of the set an address learned for app goes to: the learned source of
// that app, else the general one (App ""); false if there is none.
func LearnedSet(rs *Ruleset, app string, a netip.Addr) (string, bool) {
	var pick *Source
	for i := range rs.Sources {
		s := &rs.Sources[i]
		if s.Kind == KindLearned && (s.App == app || s.App == "" && pick == nil) {
			pick = s
		}
	}
	if pick == nil {
		return "", false
	}
	if a.Is4() {
		return SetName(pick.Name) + "_v4", true
	}
	return SetName(pick.Name) + "_v6", true
}

// Clamp bounds a learned element's lifetime.
func Clamp(ttl, lo, hi time.Duration) time.Duration {
	return min(max(ttl, lo), hi)
}

// Range is an inclusive address range of a set.
type Range struct{ First, Last netip.Addr }

// Ranges merges sorted, non-overlapping prefixes into ranges, joining adjacent ones: the kernel
// stores them so, and Render prints them so, to list the same.
func Ranges(ps []netip.Prefix) []Range {
	var out []Range
	for i := 0; i < len(ps); {
		r := Range{First: ps[i].Addr(), Last: lastAddr(ps[i])}
		for i++; i < len(ps) && r.Last.Next() == ps[i].Addr(); i++ {
			r.Last = lastAddr(ps[i])
		}
		out = append(out, r)
	}
	return out
}

// String prints the range as nft does: an address, a prefix, or first-last.
func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	for bits := r.First.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(r.First, bits)
		if p.Masked().Addr() == r.First && lastAddr(p) == r.Last {
			return p.String()
		}
	}
	return r.First.String() + "-" + r.Last.String()
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
