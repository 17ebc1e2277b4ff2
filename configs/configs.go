// Package configs ships the files a new user needs: the default configuration and the built-in
// blocklists, embedded so the binary runs with no files on disk.
package configs

import (
	"embed"
	"io/fs"
	"path"
	"sort"
	"strings"
)

//go:embed dnsfence.yaml
var defaultConfig []byte

//go:embed blocklists/*.txt
var lists embed.FS

// DefaultConfig returns the configuration used when no -config is given (a copy: callers may keep it).
func DefaultConfig() []byte {
	return append([]byte(nil), defaultConfig...)
}

// Lists is the file system of the built-in blocklists; BuiltinPath names a list's file in it.
func Lists() fs.FS { return lists }

// BuiltinPath is the path of the built-in list called name inside Lists().
func BuiltinPath(name string) string { return path.Join("blocklists", name+".txt") }

// Builtins returns the names of the built-in lists, sorted.
func Builtins() []string {
	entries, _ := fs.ReadDir(lists, "blocklists")
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".txt"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}
