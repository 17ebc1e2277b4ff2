//go:build linux

package egress

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var nsSeq atomic.Int32

// newNetNS creates a network namespace for the test, deleted in Cleanup, and returns its name
// and an open fd.
func newNetNS(t *testing.T) (string, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and an nftables table in it")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	name := fmt.Sprintf("dnsfence-eg-%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return name, int(f.Fd())
}

func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nft not installed; .ci/run should install nftables")
		}
		t.Skip("needs nft (Debian nftables) to read the table back")
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v: %s", args, err, out)
	}
	return string(out)
}

func testConfig() Config {
	return Config{
		Table: "dnsfence", Rules: true, Reject: true, ForceDNS: ForceRedirect, DNSPort: 5353,
		LANInterfaces: []string{"lan0"},
		LANPrefixes:   []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:100::/48")},
		Sources: []Source{
			{Name: "qq", Kind: KindApp, App: "qq", Origin: "apps/qq.ips", Prefixes: []netip.Prefix{
				netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.64/26"),
				netip.MustParsePrefix("192.0.2.128/26"), netip.MustParsePrefix("2001:db8::1/128")}},
			{Name: "my-list", Kind: KindList, Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/28")}},
			{Name: "learned", Kind: KindLearned},
			{Name: "doh", Kind: KindDoH, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32")}},
		},
	}
}

func mustBuild(t *testing.T, cfg Config) *Ruleset {
	t.Helper()
	rs, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestOwnerMatchesRender installs the description over netlink in one namespace and its
// rendering with nft -f in another: both tables must list the same, so `dnsfence egress rules`
// prints what the owner installs.
func TestOwnerMatchesRender(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"reject-redirect", func(*Config) {}},
		{"drop-forcedrop", func(c *Config) { c.Reject, c.ForceDNS = false, ForceDrop }},
		{"sets-only", func(c *Config) { c.Rules = false }},
		{"groups", func(c *Config) {
			c.Groups = []Group{
				{Name: "kids", Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.128/25")}, LogOnly: true},
				{Name: "guests", Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.64/26"), netip.MustParsePrefix("2001:db8:100:1::/64")}, Exempt: []string{"qq"}},
				{Name: "default", Exempt: []string{"my-list"}},
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mod(&cfg)
			rs := mustBuild(t, cfg)
			nsA, fdA := newNetNS(t)
			o, err := Start(rs, Options{NetNSFd: fdA})
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			nsB, _ := newNetNS(t)
			f := t.TempDir() + "/rules.nft"
			if err := os.WriteFile(f, []byte(Render(rs)), 0o600); err != nil {
				t.Fatal(err)
			}
			nft(t, nsB, "-f", f)
			a, b := nft(t, nsA, "list", "table", "inet", "dnsfence"), nft(t, nsB, "list", "table", "inet", "dnsfence")
			if a != b {
				t.Errorf("netlink and rendered tables differ:\n--- netlink\n%s\n--- nft -f\n%s", a, b)
			}
			if !strings.Contains(a, "192.0.2.64-192.0.2.191") {
				t.Errorf("adjacent prefixes not merged into one range:\n%s", a)
			}
		})
	}
}

func TestOwnerUpdatesLearnsAndExpires(t *testing.T) {
	ns, fd := newNetNS(t)
	var expired, learned atomic.Int32
	var failures atomic.Int32
	o, err := Start(mustBuild(t, testConfig()), Options{NetNSFd: fd, Cleanup: true,
		OnExpired: func(n int) { expired.Add(int32(n)) },
		OnLearned: func(a, _ int) { learned.Add(int32(a)) },
		OnUpdate: func(err error) {
			if err != nil {
				failures.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// A list reload: same structure, new contents. Counters must survive it.
	cfg := testConfig()
	cfg.Sources[0].Prefixes = []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}
	o.Apply(mustBuild(t, cfg))
	waitFor(t, func() bool {
		s := nft(t, ns, "list", "set", "inet", "dnsfence", "qq_v4")
		return strings.Contains(s, "192.0.2.7") && !strings.Contains(s, "192.0.2.1 ")
	}, "qq_v4 holds the reloaded list")
	if s := nft(t, ns, "list", "set", "inet", "dnsfence", "qq_v6"); strings.Contains(s, "2001:db8::1") {
		t.Errorf("qq_v6 still holds a removed entry:\n%s", s)
	}

	// Learning: the element appears with a timeout and is gone after it.
	if !o.Learn("", []netip.Addr{netip.MustParseAddr("203.0.113.99"), netip.MustParseAddr("2001:db8:5::9")}, 2*time.Second) {
		t.Fatal("learn queue full")
	}
	waitFor(t, func() bool {
		return strings.Contains(nft(t, ns, "list", "set", "inet", "dnsfence", "learned_v4"), "203.0.113.99")
	}, "learned address in learned_v4", o)
	if s := nft(t, ns, "list", "set", "inet", "dnsfence", "learned_v6"); !strings.Contains(s, "2001:db8:5::9") || !strings.Contains(s, "timeout") {
		t.Errorf("learned_v6 lacks the learned address with a timeout:\n%s", s)
	}
	hits := o.Explain(ctx, netip.MustParseAddr("203.0.113.99"))
	if len(hits) != 1 || hits[0].Kind != KindLearned || hits[0].Expires.IsZero() {
		t.Errorf("Explain(learned) = %v", hits)
	}
	if hits := o.Explain(ctx, netip.MustParseAddr("192.0.2.7")); len(hits) != 1 || hits[0].App != "qq" {
		t.Errorf("Explain(app address) = %v", hits)
	}
	// A structural change (rules off) replaces the table but keeps learned elements.
	cfg.Rules = false
	o.Apply(mustBuild(t, cfg))
	waitFor(t, func() bool {
		return !strings.Contains(nft(t, ns, "list", "table", "inet", "dnsfence"), "chain forward")
	}, "table replaced without chains")
	if s := nft(t, ns, "list", "set", "inet", "dnsfence", "learned_v4"); !strings.Contains(s, "203.0.113.99") {
		t.Errorf("a table replace lost the learned element:\n%s", s)
	}
	waitFor(t, func() bool {
		return !strings.Contains(nft(t, ns, "list", "set", "inet", "dnsfence", "learned_v4"), "203.0.113.99")
	}, "learned element expired in the kernel")
	waitFor(t, func() bool { return expired.Load() == 2 }, "owner counted 2 expired elements")
	if learned.Load() != 2 {
		t.Errorf("learned = %d, want 2", learned.Load())
	}
	if _, err := o.Counters(ctx); err != nil {
		t.Errorf("Counters: %v", err)
	}
	if failures.Load() != 0 || o.Status() != nil {
		t.Errorf("updates failed: %d, status %v", failures.Load(), o.Status())
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if s := nft(t, ns, "list", "tables"); strings.Contains(s, "dnsfence") {
		t.Errorf("Close with Cleanup left the table:\n%s", s)
	}
}

func TestOwnerLeavesOtherTables(t *testing.T) {
	ns, fd := newNetNS(t)
	nft(t, ns, "add", "table", "inet", "mine")
	nft(t, ns, "add", "chain", "inet", "mine", "c")
	o, err := Start(mustBuild(t, testConfig()), Options{NetNSFd: fd, Cleanup: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if s := nft(t, ns, "list", "tables"); !strings.Contains(s, "table inet mine") {
		t.Errorf("another table was touched:\n%s", s)
	}
}

func waitFor(t *testing.T, cond func() bool, what string, o ...*Owner) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			var status error
			if len(o) > 0 {
				status = o[0].Status()
			}
			t.Fatalf("timed out waiting for: %s (owner status: %v)", what, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOwnerFailureAndHeal: a batch the kernel refuses is reported (degraded), the table keeps
// its last good state, and the next good ruleset clears it; a table removed by someone else
// (a firewall reload's flush ruleset) is reinstalled.
func TestOwnerFailureAndHeal(t *testing.T) {
	ns, fd := newNetNS(t)
	updates := make(chan error, 16)
	good := mustBuild(t, testConfig())
	o, err := Start(good, Options{NetNSFd: fd, Cleanup: true, OnUpdate: func(err error) { updates <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	bad := mustBuild(t, testConfig())
	bad.Chains[0].Rules = append(bad.Chains[0].Rules, Rule{Verdict: Verdict{Kind: Jump, Chain: "no_such_chain"}})
	o.Apply(bad)
	select {
	case err := <-updates:
		if err == nil || o.Status() == nil {
			t.Fatalf("a refused batch reported %v, status %v", err, o.Status())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a refused batch was not reported")
	}
	if s := nft(t, ns, "list", "chain", "inet", "dnsfence", "forward"); strings.Contains(s, "no_such_chain") {
		t.Errorf("a refused batch changed the table:\n%s", s)
	}
	o.Apply(good)
	select {
	case err := <-updates:
		if err != nil || o.Status() != nil {
			t.Fatalf("recovery reported %v, status %v", err, o.Status())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("recovery not reported")
	}
	nft(t, ns, "flush", "ruleset")
	waitFor(t, func() bool {
		return strings.Contains(nft(t, ns, "list", "tables"), "table inet dnsfence")
	}, "the removed table reinstalled", o)
}

// BenchmarkOwnerReloadSets measures a list reload: one set of n IPv4 prefixes replaced in one
// batch (flush and refill), as the owner does when a list changes.
func BenchmarkOwnerReloadSets(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	name := fmt.Sprintf("dnsfence-egb-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const n = 20000
	mk := func(seed int) *Ruleset {
		ps := make([]netip.Prefix, 0, n)
		for i := range n {
			v := uint32(10<<24) + uint32(i*4+seed%2)
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32))
		}
		rs, err := Build(Config{Table: "dnsfence", Sources: []Source{{Name: "big", Kind: KindList, Prefixes: ps}}})
		if err != nil {
			b.Fatal(err)
		}
		return rs
	}
	rss := []*Ruleset{mk(0), mk(1)}
	done := make(chan error, 1)
	o, err := Start(rss[0], Options{NetNSFd: int(f.Fd()), OnUpdate: func(err error) { done <- err }})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	b.ResetTimer()
	for i := range b.N {
		// update directly on the benchmark goroutine through do, so the time is the batch's.
		var err error
		o.do(context.Background(), func() { err = o.update(rss[(i+1)%2]) })
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(n, "prefixes/op")
}

// TestOwnerLargeList: a list far beyond the default netlink socket buffer installs in one batch.
func TestOwnerLargeList(t *testing.T) {
	ns, fd := newNetNS(t)
	const n = 50000
	ps := make([]netip.Prefix, 0, n)
	for i := range n {
		v := uint32(10<<24) + uint32(i*2)
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32))
	}
	rs := mustBuild(t, Config{Table: "dnsfence", Sources: []Source{{Name: "big", Kind: KindList, Prefixes: ps}}})
	o, err := Start(rs, Options{NetNSFd: fd, Cleanup: true})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	out := nft(t, ns, "list", "set", "inet", "dnsfence", "big_v4")
	if got := len(regexp.MustCompile(`10\.\d+\.\d+\.\d+`).FindAllString(out, -1)); got != n {
		t.Errorf("big_v4 lists %d elements, want %d", got, n)
	}
}
