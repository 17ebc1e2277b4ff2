package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// TestSmallBuildWithoutHistoryDrivers: a binary built with -tags nosqlite,nopostgres (for routers
// with little flash; the history's drivers are about 8 MiB of a 22 MiB binary) starts on the
// built-in config, which keeps the history in SQLite by default: it says the history is off, once,
// and blocks as usual.
func TestSmallBuildWithoutHistoryDrivers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a second binary")
	}
	path := filepath.Join(t.TempDir(), "dnsfence-small")
	if out, err := exec.Command("go", "build", "-tags", "nosqlite,nopostgres", "-o", path, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags nosqlite,nopostgres: %v\n%s", err, out)
	}
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	p := startBinaryAt(t, path, nil, "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0", "-upstream", up.Addr)
	r := resolvertest.Exchange(t, "udp", p.dnsAddr, resolvertest.Query("mobilegw.alipay.com", dns.TypeA, false))
	if r.Rcode != dns.RcodeNameError {
		t.Errorf("a curated app name: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	logs := p.logs.String()
	if n := strings.Count(logs, `"attempt history off"`); n != 1 || !strings.Contains(logs, "built without SQLite") {
		t.Errorf("want one 'attempt history off' line naming the missing SQLite, got %d:\n%s", n, logs)
	}
}
