package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain points the user's cache directory ($XDG_CACHE_HOME) at a temporary one and clears
// systemd's $CACHE_DIRECTORY and $STATE_DIRECTORY: servers started by tests keep their compiled
// block list index and their history database there, and must not write into ~/.cache. Tests
// that set downloads.cache_dir or history.path themselves still win.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dnsfence-test-cache")
	if err != nil {
		panic(err)
	}
	// go build (binary) keeps its own cache where it was.
	if os.Getenv("GOCACHE") == "" {
		if out, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
			os.Setenv("GOCACHE", strings.TrimSpace(string(out)))
		}
	}
	os.Setenv("XDG_CACHE_HOME", dir)
	os.Unsetenv("STATE_DIRECTORY")
	os.Unsetenv("CACHE_DIRECTORY")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
