package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// TestInvalidConfigKeepsListReloads: while the config file is invalid, edits to the list files
// still apply (under the last good config), through the file watcher as well as SIGHUP; the
// refusal is logged, counted and shown by dnsfence_config_last_reload_success until the file is
// fixed.
func TestInvalidConfigKeepsListReloads(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.80"))
	dir := t.TempDir()
	path := filepath.Join(dir, "dnsfence.yaml")
	list := filepath.Join(dir, "local.txt")
	replace := func(p, content string) {
		writeFile(t, dir, "next.tmp", content)
		if err := os.Rename(filepath.Join(dir, "next.tmp"), p); err != nil {
			t.Fatal(err)
		}
	}
	good := "listen: [127.0.0.1:0]\nupstreams: [" + up.Addr + "]\napps: none\nblocklists: [{name: local, path: " + list + "}]\n"
	replace(list, "first.example\n")
	replace(path, good)
	d := start(t, "-config", path)
	blocked := func(name string) bool {
		return resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, dns.TypeA, false)).Rcode == dns.RcodeNameError
	}
	gauge := func() float64 { return value(scrape(t, d.httpAddr), "dnsfence_config_last_reload_success") }
	if !blocked("first.example") || gauge() != 1 {
		t.Fatalf("initial state: first.example blocked %v, last_reload_success %v", blocked("first.example"), gauge())
	}

	replace(path, good+"blocking: {mode: zeroip}\n")
	d.triggerReload(t)
	if gauge() != 0 || !strings.Contains(d.log.String(), "config reload refused") {
		t.Fatalf("refused config: last_reload_success %v; log:\n%s", gauge(), d.log)
	}

	// A list edit picked up by the watcher, with the config still invalid.
	replace(list, "first.example\nsecond.example\n")
	deadline := time.Now().Add(10 * time.Second)
	for !blocked("second.example") {
		if time.Now().After(deadline) {
			t.Fatalf("a name added to a list file is not blocked while the config is invalid\n%s", d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// And one applied by a reload request.
	replace(list, "third.example\n")
	d.triggerReload(t)
	if !blocked("third.example") || blocked("first.example") {
		t.Fatal("a list edit did not apply at a reload while the config is invalid")
	}
	if v := value(scrape(t, d.httpAddr), "dnsfence_config_reloads_total", "result=failure"); v < 2 {
		t.Errorf("config_reloads_total{failure} = %v, want each refusal counted", v)
	}

	replace(path, good)
	d.triggerReload(t)
	if gauge() != 1 {
		t.Errorf("fixed config: last_reload_success %v, want 1", gauge())
	}
}
