package blocklist

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// newTestSet builds a Set from in-memory lists named by their first element.
func newTestSet(t testing.TB, lists ...[]string) *Set {
	t.Helper()
	fsys := fstest.MapFS{}
	var sources []Source
	for _, l := range lists {
		fsys[l[0]] = &fstest.MapFile{Data: []byte(strings.Join(l[1:], "\n"))}
		sources = append(sources, Source{Name: l[0], Path: l[0], FS: fsys})
	}
	s, _, err := Load(sources)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func TestMatch(t *testing.T) {
	s := newTestSet(t,
		[]string{"ads", "example.com", "tracker.net", "deep.sub.corp.org", "under_score.io"},
		[]string{"malware", "bad.example.com", "tracker.net", "x.deep.sub.corp.org", "corp.org"},
	)
	tests := []struct {
		name     string
		query    string
		wantList string
		wantRule string
	}{
		{"exact", "example.com", "ads", "example.com"},
		{"subdomain", "a.example.com", "ads", "example.com"},
		{"deeper subdomain", "x.y.z.example.com", "ads", "example.com"},
		{"mixed case", "WwW.ExAmPlE.CoM", "ads", "example.com"},
		{"trailing dot", "www.example.com.", "ads", "example.com"},
		{"mixed case FQDN", "Sub.Example.COM.", "ads", "example.com"},
		{"look-alike prefix", "notexample.com", "", ""},
		{"look-alike suffix", "example.com.evil.net", "", ""},
		{"parent of entry", "com", "", ""},
		{"root", ".", "", ""},
		{"empty", "", "", ""},
		{"double dot", "example..com", "", ""},
		{"most specific wins over earlier list", "bad.example.com", "malware", "bad.example.com"},
		{"most specific wins below it", "a.bad.example.com", "malware", "bad.example.com"},
		{"sibling of specific", "good.example.com", "ads", "example.com"},
		{"most specific in earlier list", "deep.sub.corp.org", "ads", "deep.sub.corp.org"},
		{"most specific in later list", "a.x.deep.sub.corp.org", "malware", "x.deep.sub.corp.org"},
		{"shorter in later list", "sub.corp.org", "malware", "corp.org"},
		{"duplicate owned by first list", "tracker.net", "ads", "tracker.net"},
		{"underscore", "_x.under_score.io", "ads", "under_score.io"},
		{"too long", strings.Repeat("a.", 127) + "example.com", "", ""},
		{"non-ASCII", "exämple.com", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, rule, ok := s.Match(tt.query)
			if list != tt.wantList || rule != tt.wantRule || ok != (tt.wantList != "") {
				t.Errorf("Match(%q) = %q, %q, %v; want %q, %q, %v", tt.query, list, rule, ok, tt.wantList, tt.wantRule, tt.wantList != "")
			}
		})
	}
}

func TestMatchNil(t *testing.T) {
	var s *Set
	if list, rule, ok := s.Match("example.com"); ok || list != "" || rule != "" {
		t.Errorf("nil Set matched: %q %q", list, rule)
	}
	if s.Len() != 0 || s.Lists() != nil {
		t.Errorf("nil Set: Len %d, Lists %v", s.Len(), s.Lists())
	}
	var l Live // zero Live: no Set yet
	if _, _, ok := l.Match("example.com"); ok {
		t.Error("zero Live matched")
	}
}

func TestMatchAllocs(t *testing.T) {
	s := newTestSet(t, []string{"ads", "example.com"}, []string{"more", "a.b.c.org"})
	// Names over 32 bytes too: shorter temporary strings and slices get a
	// stack buffer even when the code would otherwise allocate.
	long := "a-rather-long-host-name.with.many.labels."
	for _, tc := range []struct {
		q    string
		want float64
	}{
		{"sub.example.com.", 0}, {"x.a.b.c.org", 0}, {"miss.example.net.", 0}, {"a.b.c.d.e.f.g.miss", 0},
		{long + "example.com.", 0}, {long + "example.net", 0}, {"MISS.Example.NET", 0},
		// The rule returned is the name's lower-case suffix: a copy when the name has capitals.
		{"Sub.Example.COM.", 1}, {long + "Example.COM.", 1},
	} {
		var ok bool
		allocs := testing.AllocsPerRun(100, func() { _, _, ok = s.Match(tc.q) })
		if allocs != tc.want {
			t.Errorf("Match(%q) (ok=%v): %v allocs, want %v", tc.q, ok, allocs, tc.want)
		}
	}
}

func TestLenAndLists(t *testing.T) {
	s := newTestSet(t,
		[]string{"a", "x.com", "y.com", "x.com", "bad..x", "z.com # c"},
		[]string{"b", "y.com", "w.com", "oops!"},
		[]string{"c", "x.com"}, // contributes nothing new
	)
	if got, want := s.Len(), 4; got != want {
		t.Errorf("Len = %d, want %d", got, want)
	}
	lists := s.Lists()
	want := []ListInfo{{Name: "a", Entries: 3, Invalid: 1}, {Name: "b", Entries: 1, Invalid: 1}, {Name: "c", Entries: 0}}
	if len(lists) != len(want) {
		t.Fatalf("Lists = %+v", lists)
	}
	for i, w := range want {
		g := lists[i]
		if g.Name != w.Name || g.Entries != w.Entries || g.Invalid != w.Invalid || len(g.Examples) != w.Invalid {
			t.Errorf("Lists[%d] = %+v, want %+v", i, g, w)
		}
	}
	// Lists returns a copy: changing it must not change the Set.
	lists[0].Name = "changed"
	lists[0].Examples[0] = "changed"
	if again := s.Lists(); again[0].Name != "a" || again[0].Examples[0] == "changed" {
		t.Errorf("Lists shares memory with the Set: %+v", again[0])
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.txt", "a.com\n")
	garbage := write("garbage.txt", "a..com\n")
	embedded := fstest.MapFS{"lists/default.txt": {Data: []byte("0.0.0.0 e.com\n")}}

	tests := []struct {
		name    string
		sources []Source
		wantErr []string // substrings of the error; none: success
		wantIs  error
	}{
		{name: "os and fs", sources: []Source{{Name: "g", Path: good}, {Name: "e", Path: "lists/default.txt", FS: embedded}}},
		{name: "no sources", sources: nil},
		{name: "missing file", sources: []Source{{Name: "g", Path: good}, {Name: "gone", Path: filepath.Join(dir, "nope.txt")}},
			wantErr: []string{`blocklist "gone"`, "nope.txt"}, wantIs: fs.ErrNotExist},
		{name: "missing in fs", sources: []Source{{Name: "e", Path: "lists/other.txt", FS: embedded}},
			wantErr: []string{`blocklist "e"`}, wantIs: fs.ErrNotExist},
		{name: "garbage", sources: []Source{{Name: "junk", Path: garbage}}, wantErr: []string{`blocklist "junk"`, "garbage.txt:1"}, wantIs: ErrNoValidEntries},
		{name: "all errors joined", sources: []Source{{Name: "junk", Path: garbage}, {Name: "gone", Path: filepath.Join(dir, "nope.txt")}},
			wantErr: []string{`blocklist "junk"`, `blocklist "gone"`}},
		{name: "duplicate name", sources: []Source{{Name: "g", Path: good}, {Name: "g", Path: good}}, wantErr: []string{`blocklist "g": duplicate name`}},
		{name: "empty name", sources: []Source{{Path: good}}, wantErr: []string{"empty name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, lists, err := Load(tt.sources)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if len(lists) != len(tt.sources) || s.Len() != len(tt.sources) {
					t.Errorf("Len %d, lists %+v; want one entry per source", s.Len(), lists)
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded, want error")
			}
			if s != nil {
				t.Error("Load returned a Set with an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
}

// TestLoadTestdata loads a small committed list mixing the supported formats.
func TestLoadTestdata(t *testing.T) {
	s, lists, err := Load([]Source{{Name: "mixed", Path: "testdata/mixed.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Len(), 8; got != want {
		t.Errorf("Len = %d, want %d", got, want)
	}
	if got, want := lists[0].Invalid, 1; got != want {
		t.Errorf("Invalid = %d, want %d: %q", got, want, lists[0].Examples)
	}
	for _, q := range []string{"ads.example.com", "x.tracker.example.net", "metrics.example.org", "a.b.c.example.io", "two.example.com", "plain.example", "adblock.example", "x.wild.example"} {
		if _, _, ok := s.Match(q); !ok {
			t.Errorf("Match(%q) missed", q)
		}
	}
	for _, q := range []string{"localhost", "example.com", "wild.example"} {
		if _, rule, ok := s.Match(q); ok {
			t.Errorf("Match(%q) hit %q", q, rule)
		}
	}
}

// TestMatchIn: a masked lookup only sees the selected lists, also for an entry that several
// lists share, and still returns the most specific selected entry.
func TestMatchIn(t *testing.T) {
	s := newTestSet(t,
		[]string{"l0", "shared.com", "a-only.com", "deep.sub.parent.com"},
		[]string{"l1", "shared.com", "b-only.com", "parent.com"},
	)
	const a, b = 1 << 0, 1 << 1
	for _, tc := range []struct {
		name    string
		mask    ListMask
		list    string
		rule    string
		blocked bool
	}{
		{"x.shared.com", a, "l0", "shared.com", true},
		{"x.shared.com", b, "l1", "shared.com", true},
		{"x.shared.com", a | b, "l0", "shared.com", true},
		{"a-only.com", b, "", "", false},
		{"b-only.com", b, "l1", "b-only.com", true},
		{"x.deep.sub.parent.com", a | b, "l0", "deep.sub.parent.com", true},
		{"x.deep.sub.parent.com", b, "l1", "parent.com", true},
		{"b-only.com", 0, "", "", false},
	} {
		list, rule, ok := s.MatchIn(tc.name, tc.mask)
		if ok != tc.blocked || list != tc.list || rule != tc.rule {
			t.Errorf("MatchIn(%q, %b) = %q %q %v, want %q %q %v", tc.name, tc.mask, list, rule, ok, tc.list, tc.rule, tc.blocked)
		}
	}
	if n := testing.AllocsPerRun(100, func() { s.MatchIn("x.deep.sub.parent.com", b) }); n != 0 {
		t.Errorf("MatchIn allocates %v times", n)
	}
}
