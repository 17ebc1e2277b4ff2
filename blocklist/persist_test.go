package blocklist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestPersistedIndex: the index is kept in the index directory, mapped again by a start with the
// same sources, rebuilt (and never trusted) when the file is corrupt, truncated or foreign, and
// rebuilt when a source changes; a reload keeps the new one.
func TestPersistedIndex(t *testing.T) {
	var names strings.Builder
	for i := range 3000 { // several blocks, with a shared domain for most
		fmt.Fprintf(&names, "host-%d.example-%d.test\n", i, i%37)
	}
	f := newLiveFixture(t, map[string]string{
		"ads":   names.String() + "*.wild.test\n/^re[0-9]+\\.test$/\n",
		"allow": "@@||ok.host-1.example-1.test^\n",
	}, "ads", "allow")
	idxDir := filepath.Join(t.TempDir(), "cache") // created on demand
	idxPath := filepath.Join(idxDir, IndexFile)
	var indexErrs []error
	opts := LiveOptions{IndexDir: idxDir, OnIndexError: func(err error) { indexErrs = append(indexErrs, err) }}
	want := map[string]string{
		"host-5.example-5.test": "ads", "www.host-2999.example-2.test": "ads", "x.wild.test": "ads",
		"wild.test": "", "re42.test": "ads", "ok.host-1.example-1.test": "", "host-1.example-1.test": "ads",
		"host-3000.example-3.test": "", "new.test": "",
	}
	start := func(wantIndexed bool) *Live {
		t.Helper()
		indexErrs = nil
		l, err := NewLiveWith(f.sources, nil, opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Initial().Indexed; got != wantIndexed {
			t.Fatalf("Indexed = %v, want %v", got, wantIndexed)
		}
		wantMatches(t, l, want)
		return l
	}

	first := start(false)
	if _, err := os.Stat(idxPath); err != nil {
		t.Fatalf("no index kept: %v", err)
	}
	again := start(true)
	if !reflect.DeepEqual(again.Set().Lists(), first.Set().Lists()) {
		t.Errorf("lists from the index %+v, built %+v", again.Set().Lists(), first.Set().Lists())
	}
	if len(indexErrs) != 0 {
		t.Errorf("index errors on a clean restart: %v", indexErrs)
	}
	good, err := os.ReadFile(idxPath)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name  string
		bytes func() []byte
	}{
		{"a flipped byte in the names", func() []byte {
			b := append([]byte(nil), good...)
			b[headerSize+len(b[headerSize:])/3] ^= 0x20
			return b
		}},
		{"a flipped byte in the header", func() []byte {
			b := append([]byte(nil), good...)
			b[40] ^= 1
			return b
		}},
		{"truncated", func() []byte { return good[:len(good)-100] }},
		{"foreign", func() []byte { return []byte(strings.Repeat("not an index\n", 200)) }},
		{"empty", func() []byte { return nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(idxPath, c.bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			start(false)
			if len(indexErrs) != 1 || !errors.Is(indexErrs[0], errForeignIndex) {
				t.Errorf("index errors %v, want one that says the file is not a valid index", indexErrs)
			}
			rebuilt, err := os.ReadFile(idxPath)
			if err != nil || string(rebuilt) != string(good) {
				t.Fatalf("the index was not rebuilt as before (%d bytes, %v)", len(rebuilt), err)
			}
			start(true)
		})
	}

	// A changed source is rebuilt, and the new index is kept.
	f.replace("ads", names.String()+"*.wild.test\n/^re[0-9]+\\.test$/\nnew.test\n")
	want["new.test"] = "ads"
	start(false)
	start(true)

	// A reload keeps its index too: the next start maps it.
	l := start(true)
	f.replace("ads", names.String()+"*.wild.test\n/^re[0-9]+\\.test$/\n")
	want["new.test"] = ""
	if r := l.Reload(); r.Err() != nil {
		t.Fatal(r.Err())
	}
	wantMatches(t, l, want)
	start(true)

	// An index of other sources is not used.
	f.sources[1].Name = "exceptions"
	start(false)
}
