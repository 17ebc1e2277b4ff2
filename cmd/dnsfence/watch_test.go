package main

import (
	"path/filepath"
	"testing"
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
		if got := inWatchedDir(tc.file, paths); got != tc.want {
			t.Errorf("inWatchedDir(%q) = %v, want %v", tc.file, got, tc.want)
		}
	}
}
