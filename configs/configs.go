// Package configs is dnsfence's configuration: the schema of the YAML file (Config), its defaults,
// strict parsing with line numbers (Load, Parse), validation that reports every problem at once
// (Config.Validate), and the mapping of settings into each package's own options. It also ships
// the files a new user needs, embedded so the binary runs with no files on disk: the default
// configuration and the built-in blocklists (the curated per-app lists).
//
// It must not start anything: no sockets, goroutines or file watches. Reading the config file,
// the token file and resolv.conf is as far as it goes; cmd/dnsfence does the wiring.
package configs

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

//go:embed dnsfence.yaml
var defaultConfig []byte

//go:embed blocklists
var lists embed.FS

// DefaultConfig returns the configuration used when no -config is given (a copy: callers may keep it).
func DefaultConfig() []byte {
	return append([]byte(nil), defaultConfig...)
}

// Lists is the file system of the built-in blocklists. Its paths are the files' paths in the
// repository (configs/blocklists/…), so a message quoting a built-in list's file:line names a
// file a reader can open.
func Lists() fs.FS { return repoFS{} }

type repoFS struct{}

func (repoFS) Open(name string) (fs.File, error) {
	rest, ok := strings.CutPrefix(name, "configs/")
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return lists.Open(rest)
}

// BuiltinPath is the path inside Lists() of the general built-in list called name.
func BuiltinPath(name string) string { return path.Join("configs", "blocklists", name+".txt") }

// BuiltinIPPath is the path inside Lists() of the address list that goes with the general
// built-in list called name (only doh-bypass has one). Address lists end in .ips, so Builtins,
// which lists the .txt name lists, never returns them.
func BuiltinIPPath(name string) string { return path.Join("configs", "blocklists", name+".ips") }

// Builtins returns the names of the general built-in lists (not the per-app ones), sorted.
func Builtins() []string {
	entries, _ := fs.ReadDir(lists, "blocklists")
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".txt"); ok && !e.IsDir() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// AppIDs are the apps named in US Executive Order 13971, in the order the order lists them
// after grouping Tencent's three. Their ids are also the only values of the metrics' app label.
var appIDs = [...]string{"qq", "qq-wallet", "wechat-pay", "alipay", "camscanner", "shareit", "vmate", "wps-office"}

// AppIDs returns the ids of the curated app lists.
func AppIDs() []string { return append([]string(nil), appIDs[:]...) }

// IsApp reports whether id is a curated app's id.
func IsApp(id string) bool {
	for _, a := range appIDs {
		if a == id {
			return true
		}
	}
	return false
}

// App describes one curated list, from its header.
type App struct {
	ID, Name, Vendor, Policy string
	Sources                  []string
	// Path is the list's file inside Lists().
	Path string
}

// AppPath is the path inside Lists() of the app list id.
func AppPath(id string) string { return path.Join("configs", "blocklists", "apps", id+".txt") }

// AppIPPath is the path inside Lists() of the app's curated address list: one address or CIDR
// per line with a "# H|M|L: source" comment, under the same header as the name list. It holds
// only addresses dedicated to the app or to the HTTPDNS service it uses, and may hold none.
func AppIPPath(id string) string { return path.Join("configs", "blocklists", "apps", id+".ips") }

// Apps reads the headers of the curated lists ("# id:", "# app:", "# vendor:", "# policy:",
// "# sources:" lines, sources separated by ";").
func Apps() ([]App, error) {
	out := make([]App, 0, len(appIDs))
	for _, id := range appIDs {
		data, err := fs.ReadFile(Lists(), AppPath(id))
		if err != nil {
			return nil, err
		}
		a := App{Path: AppPath(id)}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "# ")
			if !ok {
				continue
			}
			key, val, ok := strings.Cut(line, ": ")
			if !ok {
				continue
			}
			switch key {
			case "id":
				a.ID = val
			case "app":
				a.Name = val
			case "vendor":
				a.Vendor = val
			case "policy":
				a.Policy = val
			case "sources":
				for _, s := range strings.Split(val, ";") {
					a.Sources = append(a.Sources, strings.TrimSpace(s))
				}
			}
		}
		if a.ID != id || a.Name == "" || a.Vendor == "" || len(a.Sources) == 0 {
			return nil, fmt.Errorf("%s: header needs id %q, app, vendor and sources", a.Path, id)
		}
		out = append(out, a)
	}
	return out, nil
}
