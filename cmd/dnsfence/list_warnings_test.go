package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// TestListWarningsOncePerChange: a list's skipped lines are logged once, not again at each reload
// of the unchanged list; again when they change; and a reload that fails does not re-quote the
// examples (file:line) of the file as it was before.
func TestListWarningsOncePerChange(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.90"))
	dir := t.TempDir()
	list := filepath.Join(dir, "l.txt")
	replace := func(content string) {
		writeFile(t, dir, "next.tmp", content)
		if err := os.Rename(filepath.Join(dir, "next.tmp"), list); err != nil {
			t.Fatal(err)
		}
	}
	replace("ok.example\nbad..one\n")
	cfg := writeFile(t, dir, "c.yaml", "listen: [127.0.0.1:0]\nupstreams: ["+up.Addr+"]\napps: none\nblocklists: [{name: l, path: "+list+"}]\n")
	d := start(t, "-config", cfg)
	warnings := func() int { return strings.Count(d.log.String(), "blocklist has lines it cannot use") }
	if n := warnings(); n != 1 {
		t.Fatalf("%d warnings at start, want 1\n%s", n, d.log)
	}
	d.triggerReload(t)
	d.triggerReload(t)
	if n := warnings(); n != 1 {
		t.Fatalf("%d warnings after two reloads of the unchanged list, want 1\n%s", n, d.log)
	}
	replace("ok.example\n\nbad..two\n")
	d.triggerReload(t)
	if n := warnings(); n != 2 || !strings.Contains(d.log.String(), `l.txt:3: empty label: \"bad..two\"`) {
		t.Fatalf("%d warnings after the invalid lines changed, want 2 quoting l.txt:3\n%s", n, d.log)
	}
	replace("bad..three\n") // no rule at all: the load fails and the last good entries stay
	d.triggerReload(t)
	logs := d.log.String()
	if !strings.Contains(logs, "blocklist reload failed") || warnings() != 2 {
		t.Fatalf("a failed reload re-quoted the old file's lines (%d warnings)\n%s", warnings(), logs)
	}
}
