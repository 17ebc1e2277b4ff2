package egress

import (
	"net/netip"
	"strings"
	"testing"
)

func TestLearnedSetPerApp(t *testing.T) {
	rs, err := Build(Config{Table: "t", Sources: []Source{
		{Name: "learned", Kind: KindLearned},
		{Name: "learned-qq", Kind: KindLearned, App: "qq"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		app  string
		a    netip.Addr
		want string
	}{
		{"qq", v4, "learned_qq_v4"}, {"qq", v6, "learned_qq_v6"}, {"", v4, "learned_v4"}, {"alipay", v6, "learned_v6"},
	} {
		if got, ok := LearnedSet(rs, tc.app, tc.a); !ok || got != tc.want {
			t.Errorf("LearnedSet(%q, %s) = %q, %v; want %q", tc.app, tc.a, got, ok, tc.want)
		}
	}
	if _, ok := LearnedSet(&Ruleset{}, "", v4); ok {
		t.Error("LearnedSet without a learned source")
	}
}

func TestRanges(t *testing.T) {
	ps := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/25"), netip.MustParsePrefix("192.0.2.128/25"), // one /24
		netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("198.51.100.2/31"), // .1-.3
		netip.MustParsePrefix("255.255.255.255/32"),
	}
	var got []string
	for _, r := range Ranges(ps) {
		got = append(got, r.String())
	}
	if want := "192.0.2.0/24 198.51.100.1-198.51.100.3 255.255.255.255"; strings.Join(got, " ") != want {
		t.Errorf("Ranges = %v, want %s", got, want)
	}
}

func TestBuildRefusesRulesWithoutLAN(t *testing.T) {
	if _, err := Build(Config{Table: "t", Rules: true}); err == nil {
		t.Error("rules without LAN interfaces or prefixes accepted")
	}
	if _, err := Build(Config{Table: "t", Rules: true, LANInterfaces: []string{"br-lan"}, ForceDNS: ForceRedirect}); err == nil {
		t.Error("force_dns redirect without a port accepted")
	}
}
