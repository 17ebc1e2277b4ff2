package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// listServer serves one list over HTTP on loopback; its content and status can change.
type listServer struct {
	*httptest.Server
	mu       sync.Mutex
	body     string
	status   int
	requests int
}

func newListServer(t *testing.T, body string) *listServer {
	ls := &listServer{body: body, status: http.StatusOK}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		ls.requests++
		if ls.status != http.StatusOK {
			w.WriteHeader(ls.status)
			return
		}
		etag := `"` + dns.Fqdn(ls.body) + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write([]byte(ls.body))
	}))
	t.Cleanup(ls.Close)
	return ls
}

func (ls *listServer) set(body string, status int) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.body, ls.status = body, status
}

// TestEndToEndURLList: a URL list is downloaded at start, re-downloaded on reload, keeps its last
// good copy when the server fails, and a restart without the server serves the cached copy.
func TestEndToEndURLList(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	ls := newListServer(t, "||v1.example^\n")
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	local := writeFile(t, dir, "local.txt", "local.example\n")
	cfg := writeFile(t, dir, "dnsfence.yaml", `
listen: ["127.0.0.1:0"]
upstreams: ["`+up.Addr+`"]
apps: none
downloads:
  cache_dir: `+cache+`
  timeout: 2s
  retries: 0
blocklists:
  - name: local
    path: `+local+`
  - name: remote
    url: `+ls.URL+`/list.txt
    category: ads
    refresh: 1h
`)
	d := start(t, "-config", cfg)
	blocked := func(d *running, name string) bool {
		t.Helper()
		return resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, dns.TypeA, false)).Rcode == dns.RcodeNameError
	}
	if !blocked(d, "a.v1.example") || !blocked(d, "local.example") {
		t.Fatal("the downloaded list is not served at start")
	}
	if v := value(scrape(t, d.httpAddr), "dnsfence_blocklist_refresh_interval_seconds", "list=remote"); v != 3600 {
		t.Errorf("refresh interval metric = %v", v)
	}

	ls.set("||v2.example^\n", http.StatusOK)
	d.triggerReload(t)
	if !blocked(d, "v2.example") || blocked(d, "v1.example") {
		t.Fatal("a reload did not download the new list")
	}
	ls.mu.Lock()
	before := ls.requests
	ls.mu.Unlock()
	d.triggerReload(t) // unchanged: a conditional request answered 304
	if !blocked(d, "v2.example") {
		t.Fatal("an unchanged list was dropped")
	}
	ls.mu.Lock()
	if ls.requests != before+1 {
		t.Errorf("%d requests for one reload", ls.requests-before)
	}
	ls.mu.Unlock()

	ls.set("", http.StatusInternalServerError)
	d.triggerReload(t)
	if !blocked(d, "v2.example") {
		t.Fatal("a failed download dropped the last good list")
	}
	mfs := scrape(t, d.httpAddr)
	if v := value(mfs, "dnsfence_blocklist_last_reload_success", "list=remote"); v != 0 {
		t.Errorf("last_reload_success{remote} after a failed download = %v, want 0", v)
	}
	if v := value(mfs, "dnsfence_blocklist_last_reload_success", "list=local"); v != 1 {
		t.Errorf("last_reload_success{local} = %v, want 1", v)
	}
	// An empty 200 must not empty the list either.
	ls.set("", http.StatusOK)
	d.triggerReload(t)
	if !blocked(d, "v2.example") {
		t.Fatal("an empty download replaced the list")
	}

	// A restart with the server gone serves the cached copy.
	ls.Close()
	d2 := start(t, "-config", cfg)
	if !blocked(d2, "v2.example") {
		t.Fatal("a restart without network did not serve the cached copy")
	}

	// With no cache either, it starts with the other lists and says so.
	must(t, os.RemoveAll(cache))
	d3 := start(t, "-config", cfg)
	if !blocked(d3, "local.example") || blocked(d3, "v2.example") {
		t.Fatal("start without the URL list and its cache")
	}
	if !strings.Contains(d3.log.String(), "starting without it") {
		t.Errorf("starting without a list was not logged:\n%s", d3.log)
	}
	if v := value(scrape(t, d3.httpAddr), "dnsfence_blocklist_last_reload_success", "list=remote"); v != 0 {
		t.Errorf("last_reload_success for a list never downloaded = %v, want 0", v)
	}
}

// TestEndToEndAllowlist: allowlist entries and @@ rules let names through that block rules cover;
// the rest of the list still blocks.
func TestEndToEndAllowlist(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	block := writeFile(t, dir, "block.txt", "ads.example\n||tracker.example^\n@@||cdn.tracker.example^\n*.wild.example\n/^ad[0-9]+\\./\n")
	allow := writeFile(t, dir, "allow.txt", "good.ads.example\n")
	cfg := writeFile(t, dir, "dnsfence.yaml", `
listen: ["127.0.0.1:0"]
upstreams: ["`+up.Addr+`"]
apps: none
blocklists:
  - {name: block, path: `+block+`}
allowlists:
  - {name: exceptions, path: `+allow+`}
`)
	d := start(t, "-config", cfg)
	for name, wantBlocked := range map[string]bool{
		"www.ads.example": true, "good.ads.example": false, "x.good.ads.example": false,
		"tracker.example": true, "cdn.tracker.example": false,
		"wild.example": false, "a.wild.example": true, "ad7.example": true, "add.example": false,
	} {
		r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, dns.TypeA, false))
		if got := r.Rcode == dns.RcodeNameError; got != wantBlocked {
			t.Errorf("%s: blocked %v, want %v (rcode %s)", name, got, wantBlocked, dns.RcodeToString[r.Rcode])
		}
	}
	mfs := scrape(t, d.httpAddr)
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"list=block", "kind=block"}, 2}, {[]string{"list=block", "kind=allow"}, 1},
		{[]string{"list=block", "kind=block-below"}, 1}, {[]string{"list=block", "kind=regexp"}, 1},
		{[]string{"list=exceptions", "kind=allow"}, 1},
	} {
		if v := value(mfs, "dnsfence_blocklist_rules", c.labels...); v != c.want {
			t.Errorf("dnsfence_blocklist_rules%v = %v, want %v", c.labels, v, c.want)
		}
	}
}

// TestEndToEndDirectoryList: a directory list serves every file in it, and a file added to the
// directory is picked up without a signal.
func TestEndToEndDirectoryList(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := filepath.Join(t.TempDir(), "lists.d")
	must(t, os.Mkdir(dir, 0o755))
	writeFile(t, dir, "a.txt", "a.example\n")
	writeFile(t, dir, "b.hosts", "0.0.0.0 b.example\n")
	d := start(t, "-upstream", up.Addr, "-blocklist", dir)
	blocked := func(name string) bool {
		return resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, dns.TypeA, false)).Rcode == dns.RcodeNameError
	}
	if !blocked("a.example") || !blocked("b.example") {
		t.Fatal("directory list not served")
	}
	tmp := writeFile(t, filepath.Dir(dir), "c.tmp", "c.example\n")
	must(t, os.Rename(tmp, filepath.Join(dir, "c.txt")))
	deadline := time.Now().Add(10 * time.Second)
	for !blocked("c.example") {
		if time.Now().After(deadline) {
			t.Fatalf("a file moved into the directory was not picked up\n%s", d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEndToEndCache: a repeated question is answered from the cache (the upstream sees it once,
// the TTL counts down), and a list change blocks a cached name at once.
func TestEndToEndCache(t *testing.T) {
	var mu sync.Mutex
	asked := map[string]int{}
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		asked[r.Question[0].Name]++
		mu.Unlock()
		resolvertest.A("192.0.2.7")(w, r)
	}))
	list := writeFile(t, t.TempDir(), "l.txt", "other.example\n")
	d := start(t, "-upstream", up.Addr, "-blocklist", list)
	ask := func(name string) *dns.Msg {
		return resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, dns.TypeA, false))
	}
	first := ask("cached.example")
	second := ask("CACHED.example")
	mu.Lock()
	n := asked["cached.example."]
	mu.Unlock()
	if n != 1 || len(second.Answer) != 1 || second.Answer[0].(*dns.A).A.String() != "192.0.2.7" {
		t.Fatalf("upstream asked %d times; second answer %v", n, second.Answer)
	}
	if second.Answer[0].Header().Ttl > first.Answer[0].Header().Ttl {
		t.Errorf("cached TTL %d above the first %d", second.Answer[0].Header().Ttl, first.Answer[0].Header().Ttl)
	}
	mfs := scrape(t, d.httpAddr)
	if v := value(mfs, "dnsfence_cache_hits_total"); v != 1 {
		t.Errorf("cache hits = %v, want 1", v)
	}
	if v := value(mfs, "dnsfence_queries_total", "outcome=cached"); v != 1 {
		t.Errorf("queries{outcome=cached} = %v, want 1", v)
	}
	if v := value(mfs, "dnsfence_cache_entries"); v < 1 {
		t.Errorf("cache entries = %v", v)
	}
	// Blocking is decided above the cache: a reload blocks the cached name at once.
	writeFile(t, filepath.Dir(list), "l.txt", "cached.example\n")
	d.triggerReload(t)
	if r := ask("cached.example"); r.Rcode != dns.RcodeNameError {
		t.Errorf("a cached name newly listed: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}
