//go:build linux

package egress

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dnsfence/dnsfence/blocklist"
)

// eventually polls cond for up to 5s: the owner applies rulesets asynchronously.
func eventually(cond func() bool) bool {
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// heldBy is the sources of the installed table that hold addr.
func heldBy(r *Runtime, addr string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var names []string
	for _, h := range r.Explain(ctx, netip.MustParseAddr(addr)) {
		names = append(names, h.Source)
	}
	return strings.Join(names, ",")
}

// listRuleset is a Plan.Ruleset: one set per loaded list, except those skip drops.
func listRuleset(skip func(name string, now time.Time) (bool, time.Time)) func(*blocklist.IPSet, time.Time) (Config, time.Time) {
	return func(ips *blocklist.IPSet, now time.Time) (Config, time.Time) {
		cfg := Config{Table: "dnsfence", ForceDNS: ForceOff}
		var next time.Time
		for _, l := range ips.Lists() {
			if skip != nil {
				drop, until := skip(l.Name, now)
				if !until.IsZero() {
					next = until
				}
				if drop {
					continue
				}
			}
			cfg.Sources = append(cfg.Sources, Source{Name: l.Name, Kind: KindList, Prefixes: l.Prefixes})
		}
		return cfg, next
	}
}

// TestRuntime runs the egress runtime in a network namespace through what a serving dnsfence
// does to it: a start that downloads a URL list, a refresh with new content, a reload with a
// changed file, an exemption that ends on its own, a reload whose lists do not load, and Close.
func TestRuntime(t *testing.T) {
	ns, fd := newNetNS(t)
	dir := t.TempDir()
	file := dir + "/mine.ips"
	if err := os.WriteFile(file, []byte("192.0.2.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var body atomic.Value
	body.Store("198.51.100.7\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(body.Load().(string)))
	}))
	defer srv.Close()

	f := &blocklist.Fetcher{CacheDir: dir + "/cache", Check: blocklist.CheckIPList, Retries: -1}
	sources := func(f *blocklist.Fetcher) []blocklist.Source {
		return []blocklist.Source{{Name: "mine", Path: file},
			{Name: "remote", Path: f.CachePath("remote"), URL: srv.URL, Optional: true}}
	}
	p := Plan{Enabled: true, Cleanup: true, DownloadTimeout: 5 * time.Second, Sources: sources, Ruleset: listRuleset(nil),
		Downloads: []Download{{Name: "remote", URL: srv.URL, Every: 100 * time.Millisecond}}}
	core, logs := observer.New(zap.InfoLevel)
	r, err := StartRuntime(p, RuntimeOptions{Fetcher: f, Registry: prometheus.NewRegistry(), Log: zap.New(core), NetNSFd: fd})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			r.Close()
		}
	}()
	if got := heldBy(r, "192.0.2.1"); got != "mine" {
		t.Errorf("192.0.2.1 held by %q, want mine", got)
	}
	if got := heldBy(r, "198.51.100.7"); got != "remote" {
		t.Errorf("downloaded at start: 198.51.100.7 held by %q, want remote", got)
	}
	if err := r.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}

	// A refresh with new content rebuilds without a reload.
	body.Store("198.51.100.8\n")
	if !eventually(func() bool { return heldBy(r, "198.51.100.8") == "remote" }) {
		t.Errorf("refreshed list not applied: 198.51.100.8 held by %q", heldBy(r, "198.51.100.8"))
	}

	// A reload re-reads the files.
	if err := os.WriteFile(file, []byte("192.0.2.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Update(p)
	if !eventually(func() bool { return heldBy(r, "192.0.2.2") == "mine" && heldBy(r, "192.0.2.1") == "" }) {
		t.Errorf("reload: 192.0.2.2 held by %q, 192.0.2.1 by %q", heldBy(r, "192.0.2.2"), heldBy(r, "192.0.2.1"))
	}

	// An exemption leaves mine out until it ends; the runtime rebuilds then by itself.
	until := time.Now().Add(time.Second)
	exempt := p
	exempt.Ruleset = listRuleset(func(name string, now time.Time) (bool, time.Time) {
		if name == "mine" && now.Before(until) {
			return true, until
		}
		return false, time.Time{}
	})
	r.Update(exempt)
	if !eventually(func() bool { return heldBy(r, "192.0.2.2") == "" }) {
		t.Errorf("exemption: 192.0.2.2 held by %q", heldBy(r, "192.0.2.2"))
	}
	if !eventually(func() bool { return heldBy(r, "192.0.2.2") == "mine" }) {
		t.Errorf("ended exemption not rebuilt: 192.0.2.2 held by %q", heldBy(r, "192.0.2.2"))
	}

	// Lists that do not load keep the running table.
	broken := p
	broken.Sources = func(*blocklist.Fetcher) []blocklist.Source {
		return []blocklist.Source{{Name: "mine", Path: dir + "/missing.ips"}}
	}
	r.Update(broken)
	if logs.FilterMessage("egress: address lists of the new config do not load; keeping the running ones").Len() != 1 {
		t.Errorf("broken lists not logged: %v", logs.All())
	}
	if got := heldBy(r, "192.0.2.2"); got != "mine" {
		t.Errorf("after broken lists: 192.0.2.2 held by %q, want mine", got)
	}

	// Close with Cleanup deletes the table.
	r.Close()
	closed = true
	if out := nft(t, ns, "list", "tables"); strings.Contains(out, "dnsfence") {
		t.Errorf("table left after Close with Cleanup:\n%s", out)
	}
}

// TestRuntimeNil: egress off is a nil *Runtime, and every method the program calls is a no-op.
func TestRuntimeNil(t *testing.T) {
	var r *Runtime
	if err := r.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	if m := r.LearnStage(nil); m != nil {
		t.Error("LearnStage: not nil")
	}
	r.Download(Plan{})
	r.Update(Plan{})
	r.Close()
}
