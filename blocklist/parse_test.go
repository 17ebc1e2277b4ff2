package blocklist

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParse(t *testing.T) {
	long := strings.Repeat("a", maxLineLen+1)
	huge := strings.Repeat("b", 3*readBufSize) // overflows the read buffer
	label63 := strings.Repeat("a", maxLabelLen)
	name253 := strings.Repeat(label63+".", 3) + strings.Repeat("b", 253-3*64) // exactly 253

	tests := []struct {
		name     string
		in       string
		want     []string
		invalid  int
		examples []string // substrings expected in Stats.Examples, in order
		lines    int      // checked when non-zero

		unsupported int
	}{
		{name: "one per line", in: "a.com\nb.org\n", want: []string{"a.com", "b.org"}, lines: 2},
		{name: "no final newline", in: "a.com\nb.org", want: []string{"a.com", "b.org"}, lines: 2},
		{name: "BOM", in: "\xef\xbb\xbfa.com\nb.com\n", want: []string{"a.com", "b.com"}},
		// Only line 1 may start with a BOM; elsewhere IDNA mapping drops it (a default-ignorable code point).
		{name: "BOM after line 1", in: "a.com\n\xef\xbb\xbfb.com\n", want: []string{"a.com", "b.com"}},
		{name: "CRLF", in: "a.com\r\nb.com\r\n", want: []string{"a.com", "b.com"}},
		{name: "blank lines and whitespace", in: "\n  \n\t a.com \t\n\n", want: []string{"a.com"}, lines: 4},
		{name: "comments", in: "# hash\n! bang\n  # indented\n!a.com\na.com\n", want: []string{"a.com"}},
		{name: "inline comment", in: "a.com # ads\nb.com\t#tracking\nc.com#x\n", want: []string{"a.com", "b.com"}, invalid: 1,
			examples: []string{`t.txt:3: invalid character: "c.com#x"`}},
		{name: "trailing dot", in: "a.com.\n", want: []string{"a.com"}},
		{name: "uppercase", in: "Ads.Example.COM\n", want: []string{"ads.example.com"}},
		{name: "underscore and hyphen", in: "_dmarc.a-b.com\n", want: []string{"_dmarc.a-b.com"}},
		{name: "single label", in: "intranet\n", want: []string{"intranet"}},
		{name: "hosts zero", in: "0.0.0.0 a.com\n", want: []string{"a.com"}},
		{name: "hosts loopback", in: "127.0.0.1\ta.com\n", want: []string{"a.com"}},
		{name: "hosts IPv6", in: "::1 a.com\n:: b.com\nfe80::1%lo0 c.com\n", want: []string{"a.com", "b.com", "c.com"}},
		{name: "hosts other IPv4", in: "10.1.2.3 a.com\n", want: []string{"a.com"}},
		{name: "hosts several names", in: "0.0.0.0 a.com  B.com\tc.com. # comment\n", want: []string{"a.com", "b.com", "c.com"}},
		{
			name: "hosts localhost names ignored",
			in: "127.0.0.1 localhost\n127.0.0.1 localhost.localdomain local\n255.255.255.255 broadcasthost\n" +
				"::1 ip6-localhost ip6-loopback\n0.0.0.0 0.0.0.0\n0.0.0.0 LocalHost. a.com\n",
			want: []string{"a.com"},
		},
		{name: "localhost in domain format ignored", in: "localhost\na.com\n", want: []string{"a.com"}},
		{name: "hosts bad name among good", in: "0.0.0.0 a.com b..com c.com\n", want: []string{"a.com", "c.com"}, invalid: 1,
			examples: []string{`t.txt:1: empty label: "b..com"`}},
		{name: "hosts IP as name", in: "0.0.0.0 1.2.3.4 a.com\n", want: []string{"a.com"}, invalid: 1,
			examples: []string{"t.txt:1: IP address as name"}},
		{name: "hosts IP without names", in: "0.0.0.0\na.com\n", want: []string{"a.com"}, invalid: 1,
			examples: []string{`t.txt:1: bare IP address: "0.0.0.0"`}},
		{name: "bare IPv4", in: "a.com\n192.168.1.1\n", want: []string{"a.com"}, invalid: 1,
			examples: []string{`t.txt:2: bare IP address: "192.168.1.1"`}},
		{name: "bare IPv6", in: "a.com\n2001:db8::1\n", want: []string{"a.com"}, invalid: 1,
			examples: []string{"t.txt:2: bare IP address"}},
		{name: "numeric name that is no IP", in: "1.2.3\n", want: []string{"1.2.3"}},
		{
			name: "adblock and other syntaxes",
			in: "a.com\n||ads.com^\n@@||ok.com^\n*.x.com\n/ads[0-9]+\\./\n@@/^good/\n||Y.com^|\n||*.w.com^\n" +
				"address=/x.com/0.0.0.0\nx.com/path\n",
			want:    []string{"a.com", "ads.com", "@@||ok.com^", "*.x.com", "/ads[0-9]+\\./", "@@/^good/", "y.com", "*.w.com"},
			invalid: 2,
			examples: []string{
				`t.txt:9: invalid character: "address=/x.com/0.0.0.0"`,
				`t.txt:10: invalid character: "x.com/path"`,
			},
		},
		{
			name: "adblock rules we cannot honour",
			in: "[Adblock Plus 2.0]\n||a.com^\n||b.com^$third-party\n@@||c.com^$important\nexample.com##.banner\n" +
				"example.org#@#.ad\n|http://x.com/ad\n||x.com/ad.js^\n@@ok.com\n/bad/$important\n",
			want:        []string{"a.com"},
			unsupported: 8,
			examples: []string{
				`t.txt:3: unsupported: adblock rule with $modifiers: "||b.com^$third-party"`,
				`t.txt:4: unsupported: adblock rule with $modifiers`,
				`t.txt:5: unsupported: cosmetic (element hiding) rule: "example.com##.banner"`,
				`t.txt:6: unsupported: cosmetic`,
				`t.txt:7: unsupported: adblock rule for a URL, not a domain`,
			},
		},
		{name: "bad regexp", in: "/a(/\nok.com\n", want: []string{"ok.com"}, invalid: 1, examples: []string{`t.txt:1: invalid regular expression: "/a(/"`}},
		{name: "wildcard elsewhere", in: "a.*.com\n*a.com\nok.com\n", want: []string{"ok.com"}, invalid: 2,
			examples: []string{`t.txt:1: wildcard other than a leading *.: "a.*.com"`}},
		{name: "wildcard quoted as written", in: "*.*.x.example\n*.bad_ok..example.\nok.com\n", want: []string{"ok.com"}, invalid: 2,
			examples: []string{`t.txt:1: wildcard other than a leading *.: "*.*.x.example"`, `t.txt:2: empty label: "*.bad_ok..example."`}},
		{name: "hosts wildcard", in: "0.0.0.0 *.ads.com\n", want: []string{"*.ads.com"}},
		{name: "IDN to punycode", in: "bücher.de\n||MÜNCHEN.de^\n*.café.fr\n", want: []string{"xn--bcher-kva.de", "xn--mnchen-3ya.de", "*.xn--caf-dma.fr"}},
		{name: "bad IDN", in: "a.com\nb\u00fc\u0000cher.de\n", want: []string{"a.com"}, invalid: 1, examples: []string{"t.txt:2: invalid"}},
		{name: "two names without IP", in: "a.com b.com\nc.com\n", want: []string{"c.com"}, invalid: 1,
			examples: []string{`t.txt:1: several names without an IP address: "a.com b.com"`}},
		{name: "empty labels", in: ".a.com\na..com\na.com..\nok.com\n..\n", want: []string{"ok.com"}, invalid: 4},
		{name: "lone dot", in: ".\nok.com\n", want: []string{"ok.com"}, invalid: 1, examples: []string{"t.txt:1: empty name"}},
		{name: "label 63 ok", in: label63 + ".com\n", want: []string{label63 + ".com"}},
		{name: "label 64", in: "a" + label63 + ".com\nok.com\n", want: []string{"ok.com"}, invalid: 1, examples: []string{"label too long"}},
		{name: "name 253 ok", in: name253 + ".\n", want: []string{name253}},
		{name: "name 254", in: name253 + "b\nok.com\n", want: []string{"ok.com"}, invalid: 1, examples: []string{"t.txt:1: name too long"}},
		{name: "long line", in: "a.com\n" + long + "\nb.com\n", want: []string{"a.com", "b.com"}, invalid: 1, lines: 3,
			examples: []string{`t.txt:2: line too long: "aaaa`}},
		{name: "line over read buffer", in: "a.com\n" + huge + "\nb.com\n" + huge, want: []string{"a.com", "b.com"}, invalid: 2, lines: 4,
			examples: []string{"t.txt:2: line too long", "t.txt:4: line too long"}},
		{name: "empty", in: "", want: nil},
		{name: "comments only", in: "# nothing here\n\n! still nothing\n", want: nil},
		{
			name:     "examples capped",
			in:       "a.com\n-a..1\n-a..2\n-a..3\n-a..4\n-a..5\n-a..6\n-a..7\n",
			want:     []string{"a.com"},
			invalid:  7,
			examples: []string{"t.txt:2:", "t.txt:3:", "t.txt:4:", "t.txt:5:", "t.txt:6:"},
		},
		{name: "duplicates kept", in: "a.com\nA.com.\n", want: []string{"a.com", "a.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, st, err := Parse(strings.NewReader(tt.in), "t.txt")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := ruleStrings(rules)
			if !slices.Equal(got, tt.want) {
				t.Errorf("entries = %q, want %q", got, tt.want)
			}
			if st.Rules != len(got) {
				t.Errorf("Stats.Rules = %d, want %d", st.Rules, len(got))
			}
			if st.Unsupported != tt.unsupported {
				t.Errorf("Stats.Unsupported = %d, want %d (examples %q)", st.Unsupported, tt.unsupported, st.Examples)
			}
			if st.Invalid != tt.invalid {
				t.Errorf("Stats.Invalid = %d, want %d (examples %q)", st.Invalid, tt.invalid, st.Examples)
			}
			if tt.lines != 0 && st.Lines != tt.lines {
				t.Errorf("Stats.Lines = %d, want %d", st.Lines, tt.lines)
			}
			if len(st.Examples) != min(st.Invalid+st.Unsupported, maxExamples) {
				t.Errorf("%d examples for %d invalid: %q", len(st.Examples), st.Invalid, st.Examples)
			}
			for i, want := range tt.examples {
				if i >= len(st.Examples) || !strings.Contains(st.Examples[i], want) {
					t.Errorf("example %d: got %q, want it to contain %q", i, st.Examples, want)
					break
				}
			}
			for _, ex := range st.Examples {
				if len(ex) > 200 {
					t.Errorf("example not truncated: %d bytes", len(ex))
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	readErr := errors.New("disk on fire")
	tests := []struct {
		name    string
		r       io.Reader
		wantErr error
		want    string // substring of the error
	}{
		{
			name:    "all invalid",
			r:       strings.NewReader("# broken list\na..com\n-b..com\n"),
			wantErr: ErrNoValidEntries,
			want:    `2 invalid and 0 unsupported lines, e.g. list.txt:2: empty label: "a..com"`,
		},
		{
			name:    "only bare IPs",
			r:       strings.NewReader("1.2.3.4\n"),
			wantErr: ErrNoValidEntries,
			want:    "list.txt:1: bare IP address",
		},
		{
			name:    "read error",
			r:       io.MultiReader(strings.NewReader("a.com\n"), iotest.ErrReader(readErr)),
			wantErr: readErr,
			want:    "read list.txt: disk on fire",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := Parse(tt.r, "list.txt")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
			if got != nil {
				t.Errorf("entries = %q, want nil on error", got)
			}
		})
	}
}

// TestParseChunks checks that names survive the chunked string building
// across chunk boundaries.
func TestParseChunks(t *testing.T) {
	var b strings.Builder
	var want []string
	for i := range 5000 { // ~17 bytes each: several chunks
		name := "host" + strings.Repeat("x", i%7) + ".example" + string(rune('a'+i%26)) + ".com"
		want = append(want, name)
		b.WriteString(strings.ToUpper(name) + "\n")
	}
	rules, _, err := Parse(strings.NewReader(b.String()), "t")
	if err != nil {
		t.Fatal(err)
	}
	got := ruleStrings(rules)
	if !slices.Equal(got, want) {
		t.Fatalf("chunked entries differ: got %d, want %d", len(got), len(want))
	}
}

func ruleStrings(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.String())
	}
	return out
}

// TestParseRealSamples: the same real list in hosts and in AdGuard syntax parses to the same names,
// with nothing rejected.
func TestParseRealSamples(t *testing.T) {
	names := func(path string) []string {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rules, st, err := Parse(f, path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Invalid+st.Unsupported != 0 || st.Rules != st.Kinds[Block] || st.Lines != 2013 {
			t.Errorf("%s: %+v", path, st)
		}
		var out []string
		for _, r := range rules {
			out = append(out, r.Value)
		}
		return out
	}
	hosts, adblock := names("testdata/basic-hosts-sample.txt"), names("testdata/basic-adblock-sample.txt")
	if len(hosts) != 2000 || !slices.Equal(hosts, adblock) {
		t.Errorf("hosts gives %d names, adblock %d; equal: %v", len(hosts), len(adblock), slices.Equal(hosts, adblock))
	}
}
