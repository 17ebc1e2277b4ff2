package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestInWatchedDir(t *testing.T) {
	dir := t.TempDir()
	lists := filepath.Join(dir, "lists")
	paths := []string{filepath.Join(dir, "dnsfence.yaml"), lists}
	for _, tc := range []struct {
		file string
		want bool
	}{
		{"", false},
		{filepath.Join(dir, "queries.log"), true},               // beside the config
		{filepath.Join(lists, "queries.log"), true},             // inside a directory list
		{filepath.Join(dir, "logs", "queries.log"), false},      // a directory of its own
		{filepath.Join(t.TempDir(), "queries.log"), false},      // elsewhere
		{filepath.Join(dir, "logs", "..", "queries.log"), true}, // spelled differently
	} {
		if got := InWatchedDir(tc.file, paths); got != tc.want {
			t.Errorf("InWatchedDir(%q) = %v, want %v", tc.file, got, tc.want)
		}
	}
}

// TestWatch: a replaced watched file signals once per burst, after the quiet period; another
// file in the same directory and a hidden file in a list directory do not signal; a new file in
// a list directory does.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	conf, lists := filepath.Join(dir, "dnsfence.yaml"), filepath.Join(dir, "lists")
	if err := os.Mkdir(lists, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p string) {
		t.Helper()
		if err := os.WriteFile(p+".tmp", []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil { // as editors and mv replace files
			t.Fatal(err)
		}
	}
	write(conf)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const debounce = 50 * time.Millisecond
	changed, err := Watch(ctx, []string{conf, lists}, debounce, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	signalled := func() bool {
		select {
		case <-changed:
			return true
		case <-time.After(10 * debounce):
			return false
		}
	}
	for range 3 {
		write(conf)
	}
	if !signalled() {
		t.Fatal("replacing the config file did not signal")
	}
	if signalled() {
		t.Error("a burst of writes signalled more than once")
	}
	write(filepath.Join(dir, "other.txt"))
	write(filepath.Join(lists, ".hidden"))
	if signalled() {
		t.Error("an unwatched file signalled")
	}
	write(filepath.Join(lists, "new.txt"))
	if !signalled() {
		t.Error("a new file in a list directory did not signal")
	}
}
