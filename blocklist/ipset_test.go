package blocklist

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseIPs(t *testing.T) {
	in := `# id: test
# app: Test
192.0.2.1 # one host
192.0.2.0/25
198.51.100.7/24
2001:db8::1
2001:db8::/32 # covers the one above
::ffff:203.0.113.9
not-an-address
10.0.0.1/33
`
	ps, invalid, examples, err := ParseIPs(strings.NewReader(in), "t.ips")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/25"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.9/32"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	if !slices.Equal(ps, want) {
		t.Errorf("prefixes = %v, want %v", ps, want)
	}
	if invalid != 2 || len(examples) != 2 || !strings.Contains(examples[0], "t.ips:9") {
		t.Errorf("invalid = %d, examples = %q", invalid, examples)
	}
}

func TestParseIPsEmptyAndGarbage(t *testing.T) {
	ps, _, _, err := ParseIPs(strings.NewReader("# only comments\n\n"), "c")
	if err != nil || len(ps) != 0 {
		t.Errorf("comments only: %v, %v", ps, err)
	}
	if _, _, _, err := ParseIPs(strings.NewReader("<html>error</html>\n"), "e"); !errors.Is(err, ErrNoValidEntries) {
		t.Errorf("garbage: err = %v, want ErrNoValidEntries", err)
	}
	if err := CheckIPList(strings.NewReader("# nothing\n")); err == nil {
		t.Error("CheckIPList accepted a download with no address")
	}
}

func TestIPSetLookup(t *testing.T) {
	ps, _, _, err := ParseIPs(strings.NewReader("192.0.2.0/24\n198.51.100.9\n2001:db8:1::/48\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	s := &IPSet{lists: []IPList{{Name: "a", Prefixes: ps}, {Name: "b", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")}}}}
	for _, tc := range []struct {
		addr string
		want []string
	}{
		{"192.0.2.200", []string{"a", "b"}},
		{"192.0.2.1", []string{"a"}},
		{"198.51.100.9", []string{"a"}},
		{"198.51.100.10", nil},
		{"::ffff:192.0.2.5", []string{"a"}},
		{"2001:db8:1::5", []string{"a"}},
		{"2001:db8:2::5", nil},
	} {
		var got []string
		for _, h := range s.Lookup(netip.MustParseAddr(tc.addr)) {
			got = append(got, h.List)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Lookup(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestLiveIPsReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "l.ips")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("192.0.2.1\n")
	l, err := NewLiveIPs([]Source{{Name: "l", Path: p}})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Set().Len(); got != 1 {
		t.Fatalf("Len = %d", got)
	}
	write("192.0.2.1\n192.0.2.2\n")
	if s, failed := l.Reload(); failed != nil || s.Len() != 2 {
		t.Fatalf("reload: len %d, failed %v", s.Len(), failed)
	}
	write("garbage\n")
	s, failed := l.Reload()
	if failed["l"] == nil || s.Len() != 2 {
		t.Errorf("broken reload: len %d (want the last good 2), failed %v", s.Len(), failed)
	}
	if _, err := NewLiveIPs([]Source{{Name: "m", Path: filepath.Join(dir, "missing")}}); err == nil {
		t.Error("NewLiveIPs accepted a missing list")
	}
}
