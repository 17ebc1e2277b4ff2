package configs_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dnsfence/dnsfence/configs"
)

// reserved are ranges no curated address may touch: blocking them would hit the admin's own
// network, or they are documentation addresses that only belong in tests.
var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("224.0.0.0/3"), // multicast, class E and broadcast
	netip.MustParsePrefix("::/8"),        // unspecified, loopback, IPv4-mapped and -compatible
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("3fff::/20"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

var citation = regexp.MustCompile(`^[HML]: \S.{8,}$`)

// checkIPList checks one curated address list against the contract the egress parser and the
// collateral rule rely on, and returns the entries it holds.
func checkIPList(data []byte, wantID string) ([]netip.Prefix, []error) {
	var errs []error
	fail := func(n int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("line %d: "+format, append([]any{n}, args...)...))
	}
	header := map[string]string{}
	var entries []netip.Prefix
	noneFound := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if c, ok := strings.CutPrefix(line, "#"); ok {
			if key, val, ok := strings.Cut(strings.TrimPrefix(c, " "), ": "); ok && !strings.HasPrefix(c, "  ") {
				if _, dup := header[key]; dup && key != "left out (collateral damage)" && key != "left out (unverified)" {
					fail(n, "header key %q repeated", key)
				}
				header[key] = val
				noneFound = noneFound || key == "none found"
			}
			continue
		}
		addr, cite, ok := strings.Cut(line, "#")
		addr = strings.TrimSpace(addr)
		if !ok || !citation.MatchString(strings.TrimSpace(cite)) {
			fail(n, "%q: want `address  # H|M|L: source`", line)
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(addr, "/") {
			p, err = netip.ParsePrefix(addr)
			if err == nil && p != p.Masked() {
				err = fmt.Errorf("host bits set, want %s", p.Masked())
			}
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(addr); err == nil {
				if a.Zone() != "" {
					err = fmt.Errorf("zone not allowed")
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			fail(n, "%q: %v", addr, err)
			continue
		}
		if min := map[bool]int{true: 24, false: 48}[p.Addr().Is4()]; p.Bits() < min {
			fail(n, "%s is wider than /%d", p, min)
		}
		for _, r := range reserved {
			if r.Overlaps(p) {
				fail(n, "%s overlaps reserved %s", p, r)
			}
		}
		for _, q := range entries {
			if q.Overlaps(p) { // nft interval sets reject overlapping elements
				fail(n, "%s overlaps %s listed before", p, q)
			}
		}
		entries = append(entries, p)
	}
	if header["id"] != wantID {
		errs = append(errs, fmt.Errorf("header id %q, want %q", header["id"], wantID))
	}
	for _, k := range []string{"app", "vendor", "policy"} {
		if header[k] == "" {
			errs = append(errs, fmt.Errorf("header %q missing", k))
		}
	}
	if !slices.ContainsFunc(strings.Split(header["sources"], ";"), func(s string) bool { return len(strings.TrimSpace(s)) >= 10 }) {
		errs = append(errs, fmt.Errorf("header sources missing"))
	}
	switch {
	case len(entries) == 0 && !noneFound:
		errs = append(errs, fmt.Errorf("no entries and no `# none found: why` line"))
	case len(entries) > 0 && noneFound:
		errs = append(errs, fmt.Errorf("`# none found` with %d entries", len(entries)))
	}
	return entries, errs
}

func TestAppIPLists(t *testing.T) {
	total := 0
	for _, id := range configs.AppIDs() {
		t.Run(id, func(t *testing.T) {
			data, err := fs.ReadFile(configs.Lists(), configs.AppIPPath(id))
			if err != nil {
				t.Fatal(err)
			}
			entries, errs := checkIPList(data, id)
			for _, err := range errs {
				t.Errorf("%s: %v", configs.AppIPPath(id), err)
			}
			total += len(entries)
		})
	}
	if total == 0 {
		t.Error("no app has a single curated address")
	}
}

func TestDoHBypassIPList(t *testing.T) {
	data, err := fs.ReadFile(configs.Lists(), configs.BuiltinIPPath("doh-bypass"))
	if err != nil {
		t.Fatal(err)
	}
	entries, errs := checkIPList(data, "doh-bypass")
	for _, err := range errs {
		t.Error(err)
	}
	// The resolvers a phone is most likely to be configured with by address.
	for _, want := range []string{"8.8.8.8", "1.1.1.1", "9.9.9.9", "2001:4860:4860::8888", "2606:4700:4700::1111", "223.5.5.5"} {
		a := netip.MustParseAddr(want)
		if !slices.ContainsFunc(entries, func(p netip.Prefix) bool { return p.Contains(a) }) {
			t.Errorf("%s not covered", want)
		}
	}
}

// TestBuiltinsListNamesOnly: the .ips files next to the name lists must not show up as built-in
// name lists, and every built-in name resolves to its .txt.
func TestBuiltinsListNamesOnly(t *testing.T) {
	for _, n := range configs.Builtins() {
		if strings.Contains(n, ".") {
			t.Errorf("builtin %q is not a bare name", n)
		}
		if _, err := fs.Stat(configs.Lists(), configs.BuiltinPath(n)); err != nil {
			t.Errorf("builtin %q: %v", n, err)
		}
	}
	if _, err := fs.Stat(configs.Lists(), configs.BuiltinIPPath("doh-bypass")); err != nil {
		t.Error(err)
	}
	if p := configs.AppIPPath("qq"); p != "configs/blocklists/apps/qq.ips" {
		t.Errorf("AppIPPath(qq) = %q", p)
	}
}

// TestCheckIPListRejects keeps the checker honest: each bad file must produce an error.
func TestCheckIPListRejects(t *testing.T) {
	const head = "# id: x\n# app: X\n# vendor: V\n# policy: P\n# sources: somewhere/repo path.go\n"
	good := head + "119.29.29.98   # M: some vendor doc page\n2402:4e00::/48 # L: some derived source\n"
	if _, errs := checkIPList([]byte(good), "x"); len(errs) != 0 {
		t.Fatalf("good list rejected: %v", errs)
	}
	for name, body := range map[string]string{
		"wrong id":        strings.Replace(good, "# id: x", "# id: y", 1),
		"no sources":      strings.Replace(good, "# sources: somewhere/repo path.go\n", "", 1),
		"no citation":     head + "119.29.29.98\n",
		"bad confidence":  head + "119.29.29.98 # X: some vendor doc page\n",
		"short citation":  head + "119.29.29.98 # H: doc\n",
		"not an address":  head + "example.com # H: some vendor doc page\n",
		"wide v4":         head + "119.29.0.0/16 # H: some vendor doc page\n",
		"wide v6":         head + "2402:4e00::/32 # H: some vendor doc page\n",
		"host bits":       head + "119.29.29.98/24 # H: some vendor doc page\n",
		"private":         head + "10.1.2.3 # H: some vendor doc page\n",
		"loopback v6":     head + "::1 # H: some vendor doc page\n",
		"documentation":   head + "198.51.100.7 # H: some vendor doc page\n",
		"doc v6":          head + "2001:db8::1 # H: some vendor doc page\n",
		"mapped":          head + "::ffff:8.8.8.8 # H: some vendor doc page\n",
		"overlap":         good + "119.29.29.0/24 # H: some vendor doc page\n",
		"empty":           head,
		"none but listed": good + "# none found: nothing\n",
	} {
		if _, errs := checkIPList([]byte(body), "x"); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestWatchedPaths: the config file and every local file it names (lists, allowlists, hosts
// files, egress address lists) are watched; URL and built-in lists are not.
func TestWatchedPaths(t *testing.T) {
	cfg, err := configs.Parse([]byte(`
blocklists:
  - {name: local, path: lists/ads.txt}
  - {name: remote, url: "https://example.invalid/list.txt"}
  - {name: builtin, builtin: doh-bypass}
allowlists:
  - {name: allow, path: ./allow/}
hosts_files: [/etc/hosts]
egress:
  ip_lists:
    - {name: mine, path: /etc/dnsfence/mine.ips}
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.WatchedPaths("/etc/dnsfence/../dnsfence/dnsfence.yaml")
	want := []string{"/etc/dnsfence/dnsfence.yaml", "lists/ads.txt", "allow", "/etc/hosts", "/etc/dnsfence/mine.ips"}
	if !slices.Equal(got, want) {
		t.Errorf("WatchedPaths = %q, want %q", got, want)
	}
	if got := cfg.WatchedPaths(""); slices.Contains(got, "") || len(got) != len(want)-1 {
		t.Errorf("built-in config: WatchedPaths = %q", got)
	}
}
