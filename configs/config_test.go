package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsfence/dnsfence/resolver"
)

// TestDefaultsMatchShippedFile: a key left out of a config means what configs/dnsfence.yaml says.
func TestDefaultsMatchShippedFile(t *testing.T) {
	fromFile, err := Parse(DefaultConfig(), "shipped")
	if err != nil {
		t.Fatal(err)
	}
	empty, err := Parse([]byte("# nothing set\n"), "empty")
	if err != nil {
		t.Fatal(err)
	}
	fromFile.lines, fromFile.source, empty.lines, empty.source = nil, "", nil, ""
	// %+v prints a nil and an empty slice alike: "[]" and an absent key mean the same.
	if f, e := fmt.Sprintf("%+v", fromFile), fmt.Sprintf("%+v", empty); f != e {
		t.Errorf("shipped file:\n%s\ndefaults:\n%s", f, e)
	}
	for in, want := range map[string]string{
		"apps: none\n":             "",
		"apps: []\n":               "",
		"apps: alipay\n":           "alipay",
		"apps: [vmate, qq]\n":      "vmate qq",
		"apps: all\n":              strings.Join(AppIDs(), " "),
		"listen: [127.0.0.1:53]\n": strings.Join(AppIDs(), " "),
	} {
		c, err := Parse([]byte(in), "t")
		if err != nil || strings.Join(c.Apps, " ") != want {
			t.Errorf("%q: apps %v (%v), want %q", in, c.Apps, err, want)
		}
	}
}

func TestBuiltinDefault(t *testing.T) {
	cfg, err := loadValid("")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:1053", "[::1]:1053"}
	if strings.Join(cfg.Listen, " ") != strings.Join(want, " ") || cfg.HTTP.Listen != "127.0.0.1:9253" {
		t.Errorf("default listen %v http %q", cfg.Listen, cfg.HTTP.Listen)
	}
	if strings.Join(cfg.Apps, " ") != strings.Join(AppIDs(), " ") {
		t.Errorf("default apps %v, want all eight", cfg.Apps)
	}
}

func TestConfigErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "listen: [127.0.0.1:53]\nupstream: [1.1.1.1]\n", []string{"line 2", "unknown key upstream"}},
		{"nested unknown key", "blocking:\n  mode: nxdomain\n  tll: 5s\n", []string{"line 3", "tll"}},
		{"bad duration", "upstream_timeout: soon\n", []string{"line 1", "soon"}},
		{"bad mode", "log:\n  level: info\nblocking:\n  mode: zeroip\n", []string{"line 4", "blocking.mode", "zeroip", "nxdomain, null, refused, custom"}},
		{"bad listen", "listen:\n  - 127.0.0.1:53\n  - localhost\n", []string{"line 3", "listen[1]", "localhost"}},
		{"bad upstream", "upstreams:\n  - quic://9.9.9.9\n", []string{"line 2", "upstreams[0]", "unsupported scheme"}},
		{"custom without ips", "blocking:\n  mode: custom\n", []string{"line 2", "needs blocking.ipv4"}},
		{"bad ipv4", "blocking:\n  mode: custom\n  ipv4: 2001:db8::1\n", []string{"line 3", "not an IPv4"}},
		{"list without source", "blocklists:\n  - name: x\n", []string{"line 2", "exactly one of path, url or builtin"}},
		{"duplicate list", "blocklists:\n  - {name: x, path: /a}\n  - {name: x, path: /b}\n", []string{"line 3", "duplicate list name"}},
		{"unknown app", "apps:\n  - alipay\n  - wechat\n", []string{"line 3", "apps[1]", `unknown app "wechat"`, "wechat-pay"}},
		{"unknown single app", "apps: tiktok\n", []string{"line 1", "tiktok", "qq-wallet"}},
		{"list named like an enabled app", "blocklists:\n  - {name: alipay, path: /a}\n", []string{"line 2", "taken by the enabled app list"}},
		{"list filed under unknown app", "blocklists:\n  - name: x\n    path: /a\n    app: tiktok\n", []string{"line 4", "blocklists[0].app", "tiktok"}},
		{"unknown builtin", "blocklists:\n  - name: x\n    builtin: nope\n", []string{"line 3", "unknown built-in list"}},
		{"bad list url", "blocklists:\n  - name: x\n    url: ftp://lists.example/x\n", []string{"line 3", "blocklists[0].url", "http:// or https://"}},
		{"refresh on a file", "blocklists:\n  - name: x\n    path: /a\n    refresh: 1h\n", []string{"line 4", "only URL lists are refreshed"}},
		{"refresh too often", "blocklists:\n  - name: x\n    url: https://lists.example/x\n    refresh: 10s\n", []string{"line 4", "at least 1m"}},
		{"allowlist with app", "allowlists:\n  - name: x\n    path: /a\n    app: alipay\n", []string{"line 4", "allowlists[0].app"}},
		{"allowlist named like a blocklist", "blocklists:\n  - {name: x, path: /a}\nallowlists:\n  - {name: x, path: /b}\n", []string{"line 4", "allowlists[0].name", "duplicate list name"}},
		{"bad download size", "downloads:\n  max_size_mb: 0\n", []string{"line 2", "downloads.max_size_mb"}},
		{"negative ttl", "blocking:\n  ttl: -1s\n", []string{"line 2", "blocking.ttl"}},
		{"bad cidr", "blocking:\n  blocked_nets:\n    - 203.0.113.0/24\n    - 203.0.113.0\n", []string{"line 4", "blocked_nets[1]", "not a CIDR"}},
		{"bad list mode", "blocklists:\n  - name: x\n    path: /a\n    mode: zero\n", []string{"line 4", "blocklists[0].mode", "unknown sinkhole mode"}},
		{"group without clients", "groups:\n  - name: kids\n", []string{"line 2", "clients is required"}},
		{"group bad client", "groups:\n  - name: kids\n    clients: [10.0.0.0/33]\n", []string{"line 3", "groups[0].clients[0]"}},
		{"group app not enabled", "apps: [alipay]\ngroups:\n  - name: kids\n    clients: [10.0.0.0/8]\n    apps: [vmate]\n", []string{"line 5", "not enabled"}},
		{"group unknown list", "groups:\n  - name: kids\n    clients: [10.0.0.0/8]\n    lists: [ads]\n", []string{"line 4", `no blocklist named "ads"`}},
		{"group bad mode", "groups:\n  - name: kids\n    clients: [10.0.0.0/8]\n    mode: shadow\n", []string{"line 4", "enforce or log-only"}},
		{"exemption bad time", "groups:\n  - name: kids\n    clients: [10.0.0.0/8]\n    exemptions:\n      - {app: alipay, until: tomorrow, reason: x}\n", []string{"line 5", "until", "2026-12-31T00:00:00Z"}},
		{"exemption without reason", "groups:\n  - name: kids\n    clients: [10.0.0.0/8]\n    exemptions:\n      - {app: alipay, until: 2030-01-01T00:00:00Z}\n", []string{"line 5", "reason is required"}},
		{"default group with clients", "groups:\n  - name: default\n    clients: [10.0.0.0/8]\n", []string{"line 3", "default group"}},
		{"bad access prefix", "access:\n  allow: [10.0.0.0/8, 10.0.0.0/40]\n", []string{"line 2", "access.allow[1]"}},
		{"bad access action", "access:\n  action: ignore\n", []string{"line 2", "refuse or drop"}},
		{"upstream name without bootstrap", "upstreams:\n  - tls://dns.quad9.net\n", []string{"line 2", "needs bootstrap"}},
		{"bad bootstrap", "bootstrap: [tls://9.9.9.9]\n", []string{"line 1", "bootstrap[0]", "plain DNS"}},
		{"forward zone without upstreams", "forward_zones:\n  - zone: corp.example\n", []string{"line 2", "upstreams is required"}},
		{"forward zone bad upstream", "forward_zones:\n  - zone: corp.example\n    upstreams: [quic://10.0.0.1]\n", []string{"line 3", "forward_zones[0].upstreams[0]"}},
		{"bad record", "records:\n  - nas.home.arpa. 300 IN A 192.168.1.10\n  - nas.home.arpa. IN A nope\n", []string{"line 3", "records[1]", "zone-file syntax"}},
		{"bad log format", "log:\n  format: xml\n", []string{"line 2", "log.format"}},
		{"not yaml", "listen: [unclosed\n", []string{"line"}},
		{"two problems at once", "log:\n  format: xml\n  level: loud\n", []string{"line 2", "line 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "c.yaml", tc.yaml)
			_, err := loadValid(p)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestConfigNullModeMeansNullSinkhole(t *testing.T) {
	p := writeFile(t, t.TempDir(), "c.yaml", "blocking:\n  mode: null\n")
	cfg, err := loadValid(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Blocking.Mode != "null" {
		t.Fatalf("mode %q", cfg.Blocking.Mode)
	}
}

func TestDefaultUpstreamsFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	rc := writeFile(t, dir, "resolv.conf", "# generated\nnameserver 127.0.0.1\nnameserver 192.0.2.10\nnameserver ::1\nsearch lan\n")

	got, err := DefaultUpstreams(rc, []string{"127.0.0.1:1053"})
	if err != nil || strings.Join(got, " ") != "127.0.0.1:53 192.0.2.10:53 [::1]:53" {
		t.Errorf("listening on 1053: %v %v", got, err)
	}
	// Listening on port 53 of an address in resolv.conf would forward to ourselves.
	got, err = DefaultUpstreams(rc, []string{"127.0.0.1:53", "[::]:53"})
	if err != nil || strings.Join(got, " ") != "192.0.2.10:53" {
		t.Errorf("listening on 53: %v %v", got, err)
	}
	only := writeFile(t, dir, "only", "nameserver 127.0.0.1\n")
	if _, err := DefaultUpstreams(only, []string{"0.0.0.0:53"}); err == nil || !strings.Contains(err.Error(), "none usable") {
		t.Errorf("only ourselves left: err = %v", err)
	}
	if _, err := DefaultUpstreams(filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("missing resolv.conf accepted")
	}
}

func TestExposedListeners(t *testing.T) {
	for _, tc := range []struct {
		listen, allow []string
		exposed       bool
	}{
		{[]string{"127.0.0.1:53"}, []string{"0.0.0.0/0"}, false},
		{[]string{"192.168.1.1:53"}, []string{"0.0.0.0/0"}, false},
		{[]string{"0.0.0.0:53"}, []string{"0.0.0.0/0"}, true},
		{[]string{"[::]:53"}, []string{"::/0"}, true},
		{[]string{"198.51.100.1:53"}, []string{"::/0", "10.0.0.0/8"}, true},
		{[]string{"198.51.100.1:53"}, []string{"10.0.0.0/8"}, false},
		{[]string{"0.0.0.0:53"}, prefixStrings(resolver.DefaultAllowedNets()), false},
	} {
		c := &Config{Listen: tc.listen, Access: AccessConfig{Allow: tc.allow}}
		if got := len(c.ExposedListeners()) > 0; got != tc.exposed {
			t.Errorf("listen %v allow %v: exposed %v, want %v", tc.listen, tc.allow, got, tc.exposed)
		}
	}
}

// loadValid is what dnsfence does with -config path (no flags): load, then validate.
func loadValid(path string) (*Config, error) {
	cfg, err := Load(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
