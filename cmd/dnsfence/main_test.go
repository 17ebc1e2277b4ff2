package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dnsfence/dnsfence/cmd/dnsfence/internal/indexchild"
	"github.com/dnsfence/dnsfence/configs"
)

// TestMain points the user's cache directory ($XDG_CACHE_HOME) at a temporary one and clears
// systemd's $CACHE_DIRECTORY and $STATE_DIRECTORY: servers started by tests keep their compiled
// block list index and their history database there, and must not write into ~/.cache. Tests
// that set downloads.cache_dir or history.path themselves still win.
//
// The servers' list reloads re-execute this test binary as their index child: it must do that.
func TestMain(m *testing.M) {
	if indexchild.Child() {
		os.Exit(indexchild.Run(os.Stdin, os.Stdout, os.Stderr, configs.Lists()))
	}
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
	// Under -race a process sleeps a second before it exits (the race runtime's atexit_sleep_ms);
	// the index children would make every list reload a second longer.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Unsetenv("STATE_DIRECTORY")
	os.Unsetenv("CACHE_DIRECTORY")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
