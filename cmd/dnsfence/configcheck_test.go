package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// TestConfigCheckDownloadsURLLists: -config.check downloads URL lists (into a temporary
// directory, not the cache), reports each list that cannot be loaded (HTTP error, unreachable
// host) and fails; with every list loaded, it counts them all and their skipped lines.
func TestConfigCheckDownloadsURLLists(t *testing.T) {
	good := newListServer(t, "remote.example\nsecond.example\nbad..name\n")
	missing := newListServer(t, "")
	missing.set("", http.StatusNotFound)
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	base := "listen: [127.0.0.1:1053]\nupstreams: [192.0.2.1]\napps: [alipay]\ndownloads: {cache_dir: " + cache + ", retries: 0, timeout: 2s}\n" +
		"blocklists:\n  - {name: remote, url: " + good.URL + "/list.txt}\n"
	check := func(cfg string) (string, error) {
		var out strings.Builder
		err := run(t.Context(), []string{"-config", writeFile(t, dir, "c.yaml", cfg), "-config.check"}, &out, &out)
		return out.String(), err
	}

	out, err := check(base)
	if err != nil {
		t.Fatalf("good URL list: %v\n%s", err, out)
	}
	for _, want := range []string{
		"list remote: downloaded " + good.URL + "/list.txt (",
		"bytes): 2 entries",
		"list remote: 1 invalid and 0 unsupported lines skipped",
		"OK (1 listen address, 2 lists with 13 entries)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Errorf("-config.check wrote to the download cache %s (%v)", cache, err)
	}

	out, err = check(base + "  - {name: typo, url: " + missing.URL + "/lsit.txt}\n  - {name: down, url: http://" + resolvertest.FreeTCPAddr(t) + "/list.txt}\n")
	if err == nil {
		t.Fatalf("a 404 and an unreachable URL list passed:\n%s", out)
	}
	for _, want := range []string{"list typo: cannot download " + missing.URL + "/lsit.txt", "404", "list down: cannot download", "connection refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(err.Error(), "2 URL lists of 3 could not be loaded: typo, down") {
		t.Errorf("error %q", err)
	}
}
