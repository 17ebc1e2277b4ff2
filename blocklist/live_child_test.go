package blocklist

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// childLists are lists of every kind a Set holds: names, subdomains, allow rules, expressions,
// an allowlist, so that a Set mapped from the hook's file is compared on all of them.
var childLists = map[string]string{
	"ads":   "ads.com\n||track.net^\n@@||ok.track.net^\n/^rx[0-9]+\\.example$/\n",
	"hosts": "0.0.0.0 h1.com\n0.0.0.0 h2.com\n0.0.0.0 ads.com\n",
	"allow": "h2.com\n",
}

var childQueries = []string{"ads.com", "x.ads.com", "track.net", "a.track.net", "ok.track.net", "rx12.example",
	"rxa.example", "h1.com", "h2.com", "h3.com", "new.com", "other.org"}

// childHook runs BuildIndex in this process as a child would, counting its calls.
func childHook(calls *int) func(context.Context, []Source, string) error {
	return func(_ context.Context, sources []Source, dir string) error {
		*calls++
		return BuildIndex(sources, dir)
	}
}

func newChildFixture(t *testing.T) *liveFixture {
	f := newLiveFixture(t, childLists, "ads", "hosts", "allow")
	f.sources[2].Allow = true
	return f
}

type matchResult struct {
	List, Rule string
	OK         bool
}

func matchAll(s *Set) map[string]matchResult {
	out := map[string]matchResult{}
	for _, q := range childQueries {
		l, r, ok := s.Match(q)
		out[q] = matchResult{l, r, ok}
	}
	return out
}

// TestReloadChildSameSet: a reload through LiveOptions.BuildIndex serves the Set an in-process
// reload of the same lists builds: the same matches, rules and list infos.
func TestReloadChildSameSet(t *testing.T) {
	f := newChildFixture(t)
	var calls int
	child, err := NewLiveWith(f.sources, nil, LiveOptions{IndexDir: t.TempDir(), BuildIndex: childHook(&calls)})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewLiveWith(f.sources, nil, LiveOptions{IndexDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	f.replace("ads", childLists["ads"]+"new.com\n")
	before := child.Set()
	res := child.Reload()
	if calls != 1 || !res.Child || res.ChildErr != nil || res.Err() != nil {
		t.Fatalf("Reload with the hook: %d calls, Child %v, ChildErr %v, Err %v", calls, res.Child, res.ChildErr, res.Err())
	}
	if child.Set() == before {
		t.Fatal("Reload did not swap the Set")
	}
	want := plain.Reload()
	if want.Child || want.ChildErr != nil {
		t.Errorf("Reload without a hook: Child %v, ChildErr %v", want.Child, want.ChildErr)
	}
	if got, want := matchAll(child.Set()), matchAll(plain.Set()); !reflect.DeepEqual(got, want) {
		t.Errorf("matches through the child:\n%v\nin process:\n%v", got, want)
	}
	if got := matchAll(child.Set())["new.com"]; !got.OK || got.List != "ads" {
		t.Errorf("new.com after the reload = %+v", got)
	}
	if !reflect.DeepEqual(res.Lists, want.Lists) || res.Entries != want.Entries {
		t.Errorf("lists through the child:\n%+v (%d)\nin process:\n%+v (%d)", res.Lists, res.Entries, want.Lists, want.Entries)
	}
}

// TestReloadChildFallback: whatever goes wrong with the hook or its file, the reload builds in
// process, serves the new lists and says why.
func TestReloadChildFallback(t *testing.T) {
	tests := []struct {
		name string
		hook func(sources []Source, dir string) error
		want string // in ChildErr
	}{
		{name: "hook fails", hook: func([]Source, string) error { return errors.New("exit status 1: boom") }, want: "boom"},
		{name: "garbage file", hook: func(_ []Source, dir string) error {
			return os.WriteFile(filepath.Join(dir, IndexFile), []byte(strings.Repeat("garbage!", 64)), 0o644)
		}, want: "index"},
		{name: "no file", hook: func(_ []Source, dir string) error {
			return os.Remove(filepath.Join(dir, IndexFile))
		}, want: "no such file"},
		{name: "truncated file", hook: func(sources []Source, dir string) error {
			if err := BuildIndex(sources, dir); err != nil {
				return err
			}
			p := filepath.Join(dir, IndexFile)
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, fi.Size()-8)
		}, want: "index"},
		{name: "flipped byte", hook: func(sources []Source, dir string) error {
			if err := BuildIndex(sources, dir); err != nil {
				return err
			}
			p := filepath.Join(dir, IndexFile)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 0x40
			return os.WriteFile(p, b, 0o644)
		}, want: "checksum"},
		{name: "stale file", hook: func(sources []Source, dir string) error {
			return nil // the index of the lists as they were at the start
		}, want: "other sources"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newChildFixture(t)
			l, err := NewLiveWith(f.sources, nil, LiveOptions{IndexDir: t.TempDir(),
				BuildIndex: func(_ context.Context, s []Source, dir string) error { return tt.hook(s, dir) }})
			if err != nil {
				t.Fatal(err)
			}
			f.replace("ads", childLists["ads"]+"new.com\n")
			res := l.Reload()
			if res.Child || res.ChildErr == nil || !strings.Contains(res.ChildErr.Error(), tt.want) {
				t.Errorf("Child %v, ChildErr %v; want a fallback because of %q", res.Child, res.ChildErr, tt.want)
			}
			if res.Err() != nil {
				t.Errorf("Err = %v", res.Err())
			}
			if got := matchAll(l.Set())["new.com"]; !got.OK || got.List != "ads" {
				t.Errorf("new.com after the reload = %+v", got)
			}
			// The fallback keeps an index the next start (or reload) can map.
			if _, err := loadIndex(filepath.Join(l.opts.IndexDir, IndexFile), l.opts.buildOptions(l.sources, nil).hash, l.sources, nil); err != nil {
				t.Errorf("index after the fallback: %v", err)
			}
		})
	}
}

// TestReloadChildFailingList: a list that fails makes the child fail; the reload in process
// keeps that list's last good entries and updates the others.
func TestReloadChildFailingList(t *testing.T) {
	f := newChildFixture(t)
	var calls int
	l, err := NewLiveWith(f.sources, nil, LiveOptions{IndexDir: t.TempDir(), BuildIndex: childHook(&calls)})
	if err != nil {
		t.Fatal(err)
	}
	f.replace("hosts", "x..com\n*y.com\n")
	f.replace("ads", childLists["ads"]+"new.com\n")
	res := l.Reload()
	if calls != 1 || res.Child || res.ChildErr == nil || !errors.Is(res.ChildErr, ErrNoValidEntries) {
		t.Errorf("%d calls, Child %v, ChildErr %v; want the child's list error", calls, res.Child, res.ChildErr)
	}
	if len(res.Failed) != 1 || !errors.Is(res.Failed["hosts"], ErrNoValidEntries) {
		t.Errorf("Failed = %v, want hosts", res.Failed)
	}
	wantMatches(t, l, map[string]string{"h1.com": "hosts", "new.com": "ads", "x.ads.com": "ads"})

	// Fixed, the next reload goes through the child again.
	f.replace("hosts", "0.0.0.0 h9.com\n")
	if res := l.Reload(); !res.Child || res.Err() != nil {
		t.Errorf("Reload after the fix: Child %v, ChildErr %v, Err %v", res.Child, res.ChildErr, res.Err())
	}
	wantMatches(t, l, map[string]string{"h1.com": "", "h9.com": "hosts"})
}

// TestBuildIndex: it keeps the index a start of the same lists maps, and fails without keeping
// one if a list fails.
func TestBuildIndex(t *testing.T) {
	f := newChildFixture(t)
	dir := filepath.Join(t.TempDir(), "cache")
	if err := BuildIndex(f.sources, dir); err != nil {
		t.Fatal(err)
	}
	l, err := NewLiveWith(f.sources, nil, LiveOptions{IndexDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Initial().Indexed {
		t.Error("a start after BuildIndex did not map its index")
	}
	f.replace("hosts", "x..com\n")
	dir2 := t.TempDir()
	if err := BuildIndex(f.sources, dir2); !errors.Is(err, ErrNoValidEntries) || !strings.Contains(err.Error(), `"hosts"`) {
		t.Errorf("BuildIndex with a failing list: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, IndexFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("BuildIndex with a failing list kept an index: %v", err)
	}
}

// TestLoadIndexPaced: checking a kept index reads it all, which a reload must do giving way.
func TestLoadIndexPaced(t *testing.T) {
	f := newChildFixture(t)
	var sb strings.Builder
	for i := range 50000 {
		sb.WriteString("host-" + strings.Repeat("x", i%7) + "-" + string(rune('a'+i%26)) + "-" + strconv.Itoa(i) + ".test\n")
	}
	f.replace("ads", sb.String())
	dir := t.TempDir()
	if err := BuildIndex(f.sources, dir); err != nil {
		t.Fatal(err)
	}
	p := newPacer()
	p.every, p.sleep = 0, 0
	bo := LiveOptions{IndexDir: dir}.buildOptions(f.sources, nil)
	if _, err := loadIndex(bo.path, bo.hash, f.sources, p); err != nil {
		t.Fatal(err)
	}
	if p.yields < 2 {
		t.Errorf("checking the index yielded %d times", p.yields)
	}
}

// TestNewLiveAsideUsesChild: a load with another Set serving (a config reload that changed the
// lists) goes through the hook like a reload and serves what an in-process load serves; a first
// load does not call it; a failing hook falls back to the in-process build and says why.
func TestNewLiveAsideUsesChild(t *testing.T) {
	f := newChildFixture(t)
	var calls int
	first, err := NewLiveWith(f.sources, nil, LiveOptions{IndexDir: t.TempDir(), BuildIndex: childHook(&calls)})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 0 || first.Initial().Child {
		t.Fatalf("a first load called the hook %d times (Child %v)", calls, first.Initial().Child)
	}
	aside, err := NewLiveWith(f.sources, nil, LiveOptions{IndexDir: t.TempDir(), BuildIndex: childHook(&calls), Aside: true})
	if err != nil {
		t.Fatal(err)
	}
	if init := aside.Initial(); calls != 1 || !init.Child || init.ChildErr != nil || init.Indexed {
		t.Fatalf("an aside load: %d hook calls, Child %v, ChildErr %v, Indexed %v", calls, init.Child, init.ChildErr, init.Indexed)
	}
	if got, want := matchAll(aside.Set()), matchAll(first.Set()); !reflect.DeepEqual(got, want) {
		t.Errorf("matches of the aside load:\n%v\nof the first load:\n%v", got, want)
	}

	failing := func(context.Context, []Source, string) error { return errors.New("no child today") }
	fallback, err := NewLiveWith(f.sources, nil, LiveOptions{IndexDir: t.TempDir(), BuildIndex: failing, Aside: true})
	if err != nil {
		t.Fatal(err)
	}
	if init := fallback.Initial(); init.Child || init.ChildErr == nil || !strings.Contains(init.ChildErr.Error(), "no child today") {
		t.Errorf("a failing hook: Child %v, ChildErr %v", init.Child, init.ChildErr)
	}
	if got, want := matchAll(fallback.Set()), matchAll(first.Set()); !reflect.DeepEqual(got, want) {
		t.Errorf("matches of the fallback load:\n%v\nof the first load:\n%v", got, want)
	}
}
