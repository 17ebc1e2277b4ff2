package blocklist

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// TestPrecedence: allow rules win over block rules for the same name or a parent, whatever the
// lists; "*.d" rules cover only names below d; expressions only count when no name matches.
func TestPrecedence(t *testing.T) {
	fsys := fstest.MapFS{
		"ads.txt": {Data: []byte("ads.com\n*.wild.com\n||tracker.net^\n/^ad[0-9]+\\./\nkeep.org\ncdn.keep.org\n" +
			"@@||ok.ads.com^\n/^promo\\./\n")},
		"mal.txt":   {Data: []byte("0.0.0.0 evil.com\nsub.allowed.net\n@@/^safe-/\n")},
		"allow.txt": {Data: []byte("# an allowlist: every rule allows\nallowed.net\n*.keep.org\n/^ad7\\./\n")},
	}
	s, _, err := Load([]Source{
		{Name: "ads", Path: "ads.txt", FS: fsys, Category: "ads"},
		{Name: "mal", Path: "mal.txt", FS: fsys},
		{Name: "allow", Path: "allow.txt", FS: fsys, Allow: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ q, list, rule string }{
		{"ads.com", "ads", "ads.com"},
		{"x.ads.com", "ads", "ads.com"},
		{"ok.ads.com", "", ""},   // @@ in the same list
		{"a.ok.ads.com", "", ""}, // ... and below it
		{"wild.com", "", ""},     // *.d does not cover d
		{"x.wild.com", "ads", "*.wild.com"},
		{"Y.X.Wild.Com.", "ads", "*.wild.com"},
		{"tracker.net", "ads", "tracker.net"},
		{"evil.com", "mal", "evil.com"},
		{"sub.allowed.net", "", ""},     // allowlist entry for a parent wins over a more specific block
		{"keep.org", "ads", "keep.org"}, // *.keep.org in the allowlist does not cover keep.org
		{"cdn.keep.org", "", ""},
		{"ad1.example", "ads", "/^ad[0-9]+\\./"}, // expression, as no name matches
		{"ad7.example", "", ""},                  // allowed by an allowlist expression
		{"safe-promo.example", "", ""},
		{"promo.x.ads.com", "ads", "ads.com"}, // a name rule decides before expressions
		{"promo.example", "ads", "/^promo\\./"},
		{"Ad2.Example.", "ads", "/^ad[0-9]+\\./"}, // expressions match any case
		{"nothing.example", "", ""},
	} {
		list, rule, ok := s.Match(tc.q)
		if list != tc.list || rule != tc.rule || ok != (tc.list != "") {
			t.Errorf("Match(%q) = %q %q %v, want %q %q", tc.q, list, rule, ok, tc.list, tc.rule)
		}
	}
	// Allow rules apply whatever the mask; block rules only in the selected lists.
	if _, _, ok := s.MatchIn("evil.com", 1<<0); ok {
		t.Error("MatchIn matched a list outside the mask")
	}
	if _, _, ok := s.MatchIn("sub.allowed.net", 1<<1); ok {
		t.Error("MatchIn ignored an allowlist outside the mask")
	}
	if _, _, ok := s.MatchIn("ad1.example", 1<<1); ok {
		t.Error("MatchIn matched an expression of a list outside the mask")
	}
	lists := s.Lists()
	if got := lists[0].RulesByKind(); got["block"] != 4 || got["block-below"] != 1 || got["allow"] != 1 || got["regexp"] != 2 {
		t.Errorf("ads rules by kind = %v", got)
	}
	if got := lists[2].RulesByKind(); got["allow"] != 1 || got["allow-below"] != 1 || got["allow-regexp"] != 1 || !lists[2].Allow {
		t.Errorf("allowlist rules by kind = %v (allow %v)", got, lists[2].Allow)
	}
}

func TestExplain(t *testing.T) {
	dir := t.TempDir()
	ads := writeList(t, dir, "ads.txt", "# header\nexample.com\n\n||deep.a.example.com^\n/^ad[0-9]/\n")
	allow := writeList(t, dir, "allow.txt", "a.example.com\n")
	l, err := NewLive([]Source{
		{Name: "ads", Path: ads, Category: "ads"},
		{Name: "allow", Path: allow, Allow: true, Category: "exceptions"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := l.Explain("X.Deep.A.Example.COM.")
	if e.Blocked || e.Decided != nil || e.Overridden == nil {
		t.Fatalf("explain = %+v; want allowed with an override", e)
	}
	if o := e.Overridden; o.List != "allow" || o.Rule != "@@||a.example.com^" || o.File != allow || o.Line != 1 || o.Category != "exceptions" {
		t.Errorf("override = %+v", *o)
	}
	if len(e.Hits) != 3 || e.Hits[0].Rule != "deep.a.example.com" || e.Hits[0].Line != 4 || e.Hits[2].Rule != "example.com" || e.Hits[2].Line != 2 {
		t.Errorf("hits = %+v", e.Hits)
	}
	e = l.Explain("www.example.com")
	if !e.Blocked || e.Decided == nil || e.Decided.Rule != "example.com" || e.Decided.File != ads || e.Decided.Line != 2 || e.Overridden != nil {
		t.Errorf("explain www.example.com = %+v", e)
	}
	e = l.Explain("ad5.test")
	if !e.Blocked || e.Decided.Kind != Regexp || e.Decided.Rule != "/^ad[0-9]/" || e.Decided.Line != 5 {
		t.Errorf("explain ad5.test = %+v", e.Decided)
	}
	if e := l.Explain("clean.test"); e.Blocked || len(e.Hits) != 0 || e.Name != "clean.test" {
		t.Errorf("explain clean.test = %+v", e)
	}
	// Explain and Match agree.
	for _, q := range []string{"x.deep.a.example.com", "www.example.com", "ad5.test", "clean.test", "a.example.com", "example.com"} {
		_, _, ok := l.Match(q)
		if e := l.Explain(q); e.Blocked != ok {
			t.Errorf("%s: Explain.Blocked %v, Match %v", q, e.Blocked, ok)
		}
	}
}

// TestDirectorySource: every regular file of a directory is read (hidden files and
// subdirectories skipped, symlinks followed), each with its own line numbers.
func TestDirectorySource(t *testing.T) {
	dir := t.TempDir()
	writeList(t, dir, "a.txt", "a.com\n")
	writeList(t, dir, "b.hosts", "0.0.0.0 b.com\nbad..name\n")
	writeList(t, dir, ".hidden.swp", "hidden.com\n")
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	writeList(t, filepath.Join(dir, "sub"), "c.txt", "c.com\n")
	other := writeList(t, t.TempDir(), "linked.txt", "linked.com\n")
	must(t, os.Symlink(other, filepath.Join(dir, "l.txt")))
	l, err := NewLive([]Source{{Name: "d", Path: dir}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]bool{"a.com": true, "b.com": true, "linked.com": true, "hidden.com": false, "c.com": false} {
		if _, _, ok := l.Match(q); ok != want {
			t.Errorf("Match(%q) = %v, want %v", q, ok, want)
		}
	}
	info := l.Set().Lists()[0]
	if info.Files != 3 || info.Invalid != 1 || !strings.Contains(info.Examples[0], filepath.Join(dir, "b.hosts")+":2:") {
		t.Errorf("info = %+v", info)
	}
	if e := l.Explain("x.b.com"); e.Decided == nil || e.Decided.File != filepath.Join(dir, "b.hosts") || e.Decided.Line != 1 {
		t.Errorf("explain in a directory = %+v", e.Decided)
	}
	// A new file in the directory is served after a reload.
	writeList(t, dir, "new.txt", "new.com\n")
	if res := l.Reload(); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if _, _, ok := l.Match("new.com"); !ok {
		t.Error("a file added to the directory was not loaded")
	}
}

// TestOptionalSource: a URL list not downloaded yet starts empty instead of failing the start,
// Initial says so, and a later reload picks it up.
func TestOptionalSource(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "remote.txt")
	ok := writeList(t, dir, "ok.txt", "ok.com\n")
	l, err := NewLive([]Source{{Name: "ok", Path: ok}, {Name: "remote", Path: cache, URL: "https://lists.test/x", Optional: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Initial().Failed["remote"]; err == nil || !strings.Contains(err.Error(), "not downloaded yet") {
		t.Errorf("Initial failed = %v", l.Initial().Failed)
	}
	if got := l.Set().Lists()[1].Origin; got != "https://lists.test/x" {
		t.Errorf("origin = %q", got)
	}
	writeList(t, dir, "remote.txt", "remote.com\n")
	if res := l.Reload(); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if list, _, ok := l.Match("remote.com"); !ok || list != "remote" {
		t.Errorf("after download: %q %v", list, ok)
	}
}

// failingFS serves one file whose reads fail after its first bytes: the list fails halfway, after
// some rules were added, and must keep its last good content without leaving partial rules.
type failingFS struct {
	data string
	fail *bool
}

func (f failingFS) Open(name string) (fs.File, error) {
	if name != "l.txt" {
		return nil, fs.ErrNotExist
	}
	return &failingFile{r: strings.NewReader(f.data), fail: *f.fail, size: int64(len(f.data))}, nil
}

type failingFile struct {
	r    *strings.Reader
	fail bool
	size int64
	read int
}

func (f *failingFile) Stat() (fs.FileInfo, error) { return fileInfo{f.size}, nil }
func (f *failingFile) Close() error               { return nil }
func (f *failingFile) Read(p []byte) (int, error) {
	if f.fail && f.read > 0 {
		return 0, errors.New("I/O error")
	}
	f.read++
	return f.r.Read(p[:min(len(p), 8)])
}

type fileInfo struct{ size int64 }

func (fi fileInfo) Name() string       { return "l.txt" }
func (fi fileInfo) Size() int64        { return fi.size }
func (fi fileInfo) Mode() fs.FileMode  { return 0o444 }
func (fi fileInfo) ModTime() time.Time { return time.Time{} }
func (fi fileInfo) IsDir() bool        { return false }
func (fi fileInfo) Sys() any           { return nil }

func TestReloadFailingHalfway(t *testing.T) {
	fail := false
	fsys := failingFS{data: "old1.com\nold2.com\nold3.com\n", fail: &fail}
	other := writeList(t, t.TempDir(), "o.txt", "other.com\n")
	l, err := NewLive([]Source{{Name: "l", Path: "l.txt", FS: fsys}, {Name: "o", Path: other}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fail = true
	fsys.data = "new1.com\nnew2.com\n"
	res := l.Reload()
	if res.Failed["l"] == nil || res.Failed["o"] != nil {
		t.Fatalf("failed = %v", res.Failed)
	}
	for q, want := range map[string]bool{"old1.com": true, "old3.com": true, "other.com": true, "new1.com": false} {
		if _, _, ok := l.Match(q); ok != want {
			t.Errorf("after a failing reload Match(%q) = %v, want %v", q, ok, want)
		}
	}
	if l.Set().Len() != 4 {
		t.Errorf("Len = %d, want 4 (3 kept + 1)", l.Set().Len())
	}
}

func writeList(t testing.TB, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var _ io.Reader = (*failingFile)(nil)
