package blocklist

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type liveFixture struct {
	t       *testing.T
	dir     string
	sources []Source
}

func newLiveFixture(t *testing.T, lists map[string]string, order ...string) *liveFixture {
	f := &liveFixture{t: t, dir: t.TempDir()}
	for _, name := range order {
		f.sources = append(f.sources, Source{Name: name, Path: filepath.Join(f.dir, name+".txt")})
		f.write(name, lists[name])
	}
	return f
}

func (f *liveFixture) write(name, data string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name+".txt"), []byte(data), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// replace writes the list atomically (temp file and rename), as a list
// updater must: os.WriteFile truncates first, and a reload reading the file
// then would see a valid, empty list.
func (f *liveFixture) replace(name, data string) {
	f.t.Helper()
	tmp := filepath.Join(f.dir, name+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, name+".txt")); err != nil {
		f.t.Fatal(err)
	}
}

func (f *liveFixture) remove(name string) {
	f.t.Helper()
	if err := os.Remove(filepath.Join(f.dir, name+".txt")); err != nil {
		f.t.Fatal(err)
	}
}

// wantMatches checks which list (or none, "") each query matches.
func wantMatches(t *testing.T, l *Live, want map[string]string) {
	t.Helper()
	for q, wantList := range want {
		list, _, ok := l.Match(q)
		if list != wantList || ok != (wantList != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", q, list, ok, wantList)
		}
	}
}

func TestNewLive(t *testing.T) {
	f := newLiveFixture(t, map[string]string{"ads": "ads.com\n", "mal": "mal.com\n"}, "ads", "mal")
	l, err := NewLive(f.sources, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantMatches(t, l, map[string]string{"x.ads.com": "ads", "mal.com": "mal", "ok.com": ""})
	if l.Set().Len() != 2 {
		t.Errorf("Len = %d, want 2", l.Set().Len())
	}

	// Refuse to start when any source fails.
	f.write("mal", "garbage..x\n")
	if _, err := NewLive(f.sources, nil); !errors.Is(err, ErrNoValidEntries) || !strings.Contains(err.Error(), `"mal"`) {
		t.Errorf("NewLive with a garbage list: err = %v", err)
	}
	f.remove("ads")
	if _, err := NewLive(f.sources, nil); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `"ads"`) {
		t.Errorf("NewLive with a missing list: err = %v", err)
	}
	dup := []Source{f.sources[1], f.sources[1]}
	if _, err := NewLive(dup, nil); err == nil {
		t.Error("NewLive accepted duplicate list names")
	}
}

func TestReload(t *testing.T) {
	tests := []struct {
		name       string
		breakAds   func(f *liveFixture) // nil: ads updates normally
		wantFailed bool
		wantErr    error
	}{
		{name: "all good"},
		{name: "file removed", breakAds: func(f *liveFixture) { f.remove("ads") }, wantFailed: true, wantErr: fs.ErrNotExist},
		{name: "file garbage", breakAds: func(f *liveFixture) { f.write("ads", "x..com\n*y.com\n") }, wantFailed: true, wantErr: ErrNoValidEntries},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newLiveFixture(t, map[string]string{"ads": "old-ads.com\n", "mal": "old-mal.com\n"}, "ads", "mal")
			var calls []Result
			l, err := NewLive(f.sources, func(r Result) { calls = append(calls, r) })
			if err != nil {
				t.Fatal(err)
			}
			before := l.Set()

			f.write("ads", "new-ads.com\n")
			if tt.breakAds != nil {
				tt.breakAds(f)
			}
			f.write("mal", "new-mal.com\nnew2-mal.com\n")
			res := l.Reload()

			// The other list is updated whatever happened to ads.
			want := map[string]string{"new-mal.com": "mal", "new2-mal.com": "mal", "old-mal.com": ""}
			if tt.wantFailed {
				want["old-ads.com"], want["new-ads.com"] = "ads", ""
			} else {
				want["old-ads.com"], want["new-ads.com"] = "", "ads"
			}
			wantMatches(t, l, want)

			if l.Set() == before {
				t.Error("Reload did not swap the Set")
			}
			if _, _, ok := before.Match("old-mal.com"); !ok {
				t.Error("the previous Set changed after Reload")
			}
			if res.Entries != 3 || l.Set().Len() != 3 {
				t.Errorf("Entries = %d, Len = %d, want 3", res.Entries, l.Set().Len())
			}
			if len(res.Lists) != 2 || res.Lists[0].Name != "ads" || res.Lists[0].Entries != 1 || res.Lists[1].Entries != 2 {
				t.Errorf("Lists = %+v", res.Lists)
			}
			if res.Duration <= 0 {
				t.Errorf("Duration = %v", res.Duration)
			}
			if len(calls) != 1 || calls[0].Entries != res.Entries || len(calls[0].Failed) != len(res.Failed) {
				t.Errorf("onReload calls = %+v, want one with %+v", calls, res)
			}

			err = res.Err()
			if !tt.wantFailed {
				if err != nil || len(res.Failed) != 0 {
					t.Errorf("Err = %v, Failed = %v; want none", err, res.Failed)
				}
				return
			}
			if len(res.Failed) != 1 || res.Failed["ads"] == nil {
				t.Errorf("Failed = %v, want ads only", res.Failed)
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), `blocklist "ads"`) || strings.Contains(err.Error(), `"mal"`) {
				t.Errorf("Err = %v, want %v naming ads only", err, tt.wantErr)
			}

			// Once fixed, the list recovers on the next reload.
			f.write("ads", "fixed-ads.com\n")
			if res := l.Reload(); res.Err() != nil {
				t.Fatalf("Reload after fix: %v", res.Err())
			}
			wantMatches(t, l, map[string]string{"fixed-ads.com": "ads", "old-ads.com": ""})
		})
	}
}

func TestResultErr(t *testing.T) {
	errA, errB, errC := errors.New("a broke"), errors.New("b broke"), errors.New("c broke")
	r := Result{
		Lists:  []ListInfo{{Name: "b"}, {Name: "a"}, {Name: "ok"}},
		Failed: map[string]error{"a": errA, "b": errB, "zz": errC},
	}
	err := r.Err()
	for _, e := range []error{errA, errB, errC} {
		if !errors.Is(err, e) {
			t.Errorf("Err = %v, missing %v", err, e)
		}
	}
	if got, want := err.Error(), "b broke\na broke\nc broke"; got != want {
		t.Errorf("Err = %q, want source order %q", got, want)
	}
	if err := (Result{Lists: r.Lists}).Err(); err != nil {
		t.Errorf("Err with nothing failed = %v", err)
	}
}

// TestReloadConcurrent runs Match while reloads swap the Set; -race checks the
// publication, and a name present in every version must always match.
func TestReloadConcurrent(t *testing.T) {
	f := newLiveFixture(t, map[string]string{"ads": "stable.com\nv0.com\n"}, "ads")
	l, err := NewLive(f.sources, nil)
	if err != nil {
		t.Fatal(err)
	}
	const reloads, readers = 50, 4 // two writers: 100 reloads
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for i := 0; ; i++ {
				if list, rule, ok := l.Match("www.Stable.com."); !ok || list != "ads" || rule != "stable.com" {
					t.Errorf("Match during reload = %q, %q, %v", list, rule, ok)
					return
				}
				l.Set().Lists()
				select {
				case <-done:
					return
				default:
				}
				if i%64 == 0 {
					time.Sleep(time.Microsecond) // let the writer run on small GOMAXPROCS
				}
			}
		})
	}
	var rw sync.WaitGroup
	for w := range 2 { // concurrent Reload calls are serialized
		rw.Go(func() {
			for i := range reloads {
				if res := l.Reload(); res.Err() != nil {
					t.Errorf("writer %d reload %d: %v", w, i, res.Err())
				}
			}
		})
	}
	for i := range reloads {
		f.replace("ads", "stable.com\nv"+strings.Repeat("x", i)+".com\n")
	}
	rw.Wait()
	close(done)
	wg.Wait()
}
