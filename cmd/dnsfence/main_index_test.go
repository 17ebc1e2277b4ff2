package main

import (
	"os"
	"testing"
)

// TestMain points the default cache directory ($CACHE_DIRECTORY) at a temporary one: servers
// started by tests keep their compiled block list index there, and must not write it into the
// user's ~/.cache. Tests that set downloads.cache_dir or CACHE_DIRECTORY themselves still win.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dnsfence-test-cache-")
	if err != nil {
		panic(err)
	}
	if os.Getenv("CACHE_DIRECTORY") == "" {
		os.Setenv("CACHE_DIRECTORY", dir)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
