package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/cmd/dnsfence/admin"
	"github.com/dnsfence/dnsfence/configs"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// apiCall is one admin API request and its decoded JSON answer.
type apiCall struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// api calls the running instance's HTTP listener; token "" sends no Authorization header.
func api(t *testing.T, d *running, method, path, token string) apiCall {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+d.httpAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	c := apiCall{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if strings.HasPrefix(path, "/api/") || path == "/readyz" {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		if err := json.Unmarshal(b, &c.body); err != nil {
			t.Fatalf("%s %s: not a JSON object: %v\n%s", method, path, err, b)
		}
	}
	return c
}

// wantError checks an /api/ error: the status and a JSON {"error": ...} containing want.
func (c apiCall) wantError(t *testing.T, status int, want string) {
	t.Helper()
	msg, _ := c.body["error"].(string)
	if c.status != status || !strings.Contains(msg, want) {
		t.Errorf("got %d %s, want %d with an error containing %q", c.status, c.raw, status, want)
	}
}

func TestAdminTokenRequiredOffLoopback(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, dir, "empty", "\n")
	tokenFile := writeFile(t, dir, "token", "  file-token \nignored\n")
	for _, tc := range []struct{ yaml, want string }{
		{"http:\n  listen: 0.0.0.0:9253\n", `line 2: http.listen: "0.0.0.0:9253" is not a loopback address`},
		{"http:\n  listen: \"[::]:9253\"\n", "set http.token or http.token_file"},
		{"http:\n  listen: 192.0.2.1:9253\n", "set http.token or http.token_file"},
		{"http:\n  listen: 127.0.0.1:9253\n  token: a\n  token_file: " + tokenFile + "\n", "line 4: http.token_file: set http.token or http.token_file, not both"},
		{"http:\n  listen: 0.0.0.0:9253\n  token_file: " + empty + "\n", "line 3: http.token_file: " + empty + " is empty"},
		{"http:\n  token_file: " + filepath.Join(dir, "missing") + "\n", "line 2: http.token_file"},
		{"http:\n  token: \" spaced \"\n", "line 2: http.token: must not have surrounding spaces"},
	} {
		cfg, err := configs.Parse([]byte(tc.yaml), "c.yaml")
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v\nwant %q", tc.yaml, err, tc.want)
		}
	}
	for _, ok := range []string{
		"http:\n  listen: 127.0.0.1:9253\n",
		"http:\n  listen: \"[::1]:9253\"\n",
		"http:\n  listen: localhost:9253\n",
		"http:\n  listen: \"\"\n",
		"http:\n  listen: 0.0.0.0:9253\n  token: s3cret\n",
		"http:\n  listen: 0.0.0.0:9253\n  token_file: " + tokenFile + "\n",
	} {
		cfg, err := configs.Parse([]byte(ok), "c.yaml")
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	// The -http flag is checked the same way, reported as the flag; nothing is bound.
	_, err := loadConfig(&options{http: "0.0.0.0:0", httpSet: true})
	if err == nil || !strings.Contains(err.Error(), `-http "0.0.0.0:0": `) || !strings.Contains(err.Error(), "http.token") {
		t.Errorf("-http 0.0.0.0:0 without a token: %v", err)
	}
	cfg, err := configs.Parse([]byte("http:\n  token_file: "+tokenFile+"\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := cfg.HTTPToken(); tok != "file-token" || err != nil {
		t.Errorf("token from file: %q, %v", tok, err)
	}
}

// TestAdminAuth: with a token, /api/ and /report need it; /metrics, /healthz and /readyz do not.
// Errors are JSON with the right status; unknown paths 404, wrong methods 405 with Allow.
func TestAdminAuth(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nhttp:\n  token: s3cret-token\n")
	d := start(t, "-config", cfg, "-upstream", up.Addr)

	for _, tok := range []string{"", "wrong", "s3cret-token-and-more", "s3cret-toke"} {
		c := api(t, d, "GET", "/api/stats", tok)
		c.wantError(t, http.StatusUnauthorized, "bearer token")
		if !strings.HasPrefix(c.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without WWW-Authenticate: %v", c.header)
		}
	}
	api(t, d, "GET", "/api/nope", "").wantError(t, http.StatusUnauthorized, "bearer token") // no hint what exists
	if c := api(t, d, "GET", "/report", ""); c.status != http.StatusUnauthorized {
		t.Errorf("/report without the token: %d", c.status)
	}
	if c := api(t, d, "GET", "/api/stats", "s3cret-token"); c.status != http.StatusOK || c.body["queries"] == nil {
		t.Errorf("/api/stats with the token: %d %s", c.status, c.raw)
	}
	if c := api(t, d, "GET", "/report", "s3cret-token"); c.status != http.StatusOK {
		t.Errorf("/report with the token: %d", c.status)
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if c := api(t, d, "GET", p, ""); c.status != http.StatusOK {
			t.Errorf("%s without a token: %d %s", p, c.status, c.raw)
		}
	}
	api(t, d, "GET", "/api/nope", "s3cret-token").wantError(t, http.StatusNotFound, "/api/nope")
	c := api(t, d, "GET", "/api/blocking/pause", "s3cret-token")
	c.wantError(t, http.StatusMethodNotAllowed, "use POST")
	if c.header.Get("Allow") != "POST" {
		t.Errorf("405 Allow: %q", c.header.Get("Allow"))
	}
	api(t, d, "POST", "/api/stats", "s3cret-token").wantError(t, http.StatusMethodNotAllowed, "use GET")

	// On loopback without a token, /api/ is open.
	open := start(t, "-upstream", up.Addr)
	if c := api(t, open, "GET", "/api/blocking", ""); c.status != http.StatusOK || c.body["paused"] != false {
		t.Errorf("open /api/blocking: %d %s", c.status, c.raw)
	}
}

// TestAdminPause: a pause lets blocked names through (counted as allowed, reason paused, gauge 1),
// survives a config reload, and resume blocks them again. Bad durations are 400.
func TestAdminPause(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	list := writeFile(t, dir, "l.txt", "blocked.example\n")
	base := "listen: [127.0.0.1:0]\nupstreams: [" + up.Addr + "]\napps: none\nblocklists: [{name: l, path: " + list + "}]\n"
	cfgPath := writeFile(t, dir, "c.yaml", base)
	d := start(t, "-config", cfgPath)
	rcode := rcoder(t, d.dnsAddrs[0])
	paused := func() (gauge, allowed float64) {
		mfs := scrape(t, d.httpAddr)
		return value(mfs, "dnsfence_blocking_paused"), value(mfs, "dnsfence_policy_allowed_queries_total", "reason=paused", "list=l")
	}
	if rcode("x.blocked.example") != dns.RcodeNameError {
		t.Fatal("not blocked before the pause")
	}
	if g, _ := paused(); g != 0 {
		t.Errorf("gauge %v before the pause", g)
	}

	for _, bad := range []string{"", "?for=", "?for=soon", "?for=-1m", "?for=0s", "?for=25h"} {
		api(t, d, "POST", "/api/blocking/pause"+bad, "").wantError(t, http.StatusBadRequest, "for")
	}
	before := time.Now()
	c := api(t, d, "POST", "/api/blocking/pause?for=1h", "")
	until, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(c.body["until"]))
	if c.status != http.StatusOK || c.body["paused"] != true || until.Before(before.Add(59*time.Minute)) || until.After(time.Now().Add(time.Hour)) {
		t.Fatalf("pause: %d %s", c.status, c.raw)
	}
	if rcode("x.blocked.example") != dns.RcodeSuccess || rcode("y.blocked.example") != dns.RcodeSuccess {
		t.Error("a blocked name was not answered normally while paused")
	}
	if g, a := paused(); g != 1 || a != 2 {
		t.Errorf("while paused: gauge %v, allowed{reason=paused} %v; want 1, 2", g, a)
	}
	if c := api(t, d, "GET", "/api/stats", ""); c.body["blocking"].(map[string]any)["paused"] != true ||
		c.body["allowed_by_reason"].(map[string]any)["paused"] != 2.0 {
		t.Errorf("stats while paused: %s", c.raw)
	}
	if !strings.Contains(d.log.String(), "blocking paused") {
		t.Error("the pause was not logged")
	}

	// A changed config builds a new chain: the pause carries over.
	writeFile(t, dir, "c.yaml", base+"records: [\"nas.home.arpa. 60 IN A 192.168.1.7\"]\n")
	d.triggerReload(t)
	if !strings.Contains(d.log.String(), "config reloaded") {
		t.Fatal("the config was not reloaded")
	}
	if rcode("z.blocked.example") != dns.RcodeSuccess {
		t.Error("a config reload ended the pause")
	}

	c = api(t, d, "POST", "/api/blocking/resume", "")
	if c.status != http.StatusOK || c.body["paused"] != false || c.body["was_paused"] != true {
		t.Errorf("resume: %d %s", c.status, c.raw)
	}
	if rcode("x.blocked.example") != dns.RcodeNameError {
		t.Error("still let through after resume")
	}
	if g, a := paused(); g != 0 || a != 3 {
		t.Errorf("after resume: gauge %v, allowed{reason=paused} %v; want 0, 3", g, a)
	}
	if !strings.Contains(d.log.String(), "blocking resumed") {
		t.Error("the resume was not logged")
	}
	if c := api(t, d, "POST", "/api/blocking/resume", ""); c.body["was_paused"] != false {
		t.Errorf("second resume: %s", c.raw)
	}
}

// TestAdminPauseEnds: a pause resumes by itself at its deadline (a timer, logged, gauge back to 0).
func TestAdminPauseEnds(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	list := writeFile(t, t.TempDir(), "l.txt", "blocked.example\n")
	d := start(t, "-upstream", up.Addr, "-blocklist", list)
	if c := api(t, d, "POST", "/api/blocking/pause?for=300ms", ""); c.status != http.StatusOK {
		t.Fatalf("pause: %d %s", c.status, c.raw)
	}
	// The timer's log line is the only signal: wait for it, with a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.log.String(), "pause ended") {
		if time.Now().After(deadline) {
			t.Fatalf("the pause did not end by itself:\n%s", d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := value(scrape(t, d.httpAddr), "dnsfence_blocking_paused"); v != 0 {
		t.Errorf("gauge %v after the pause ended", v)
	}
	if r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("x.blocked.example", dns.TypeA, false)); r.Rcode != dns.RcodeNameError {
		t.Error("not blocked after the pause ended")
	}
	if c := api(t, d, "GET", "/api/blocking", ""); c.body["paused"] != false {
		t.Errorf("/api/blocking after the pause ended: %s", c.raw)
	}
}

// TestAdminReload: POST /api/lists/reload reloads through the serve loop and answers with the
// result; a refused config is a 500 naming the problem.
func TestAdminReload(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	list := writeFile(t, dir, "l.txt", "old.example\n")
	cfgPath := writeFile(t, dir, "c.yaml", "listen: [127.0.0.1:0]\nupstreams: ["+up.Addr+"]\napps: [alipay]\nblocklists: [{name: l, path: "+list+"}]\n")
	d := start(t, "-config", cfgPath)
	rcode := rcoder(t, d.dnsAddrs[0])

	writeFile(t, dir, "l.txt", "new.example\nnew2.example\n")
	c := api(t, d, "POST", "/api/lists/reload", "")
	if c.status != http.StatusOK || c.body["config"] != "unchanged" {
		t.Fatalf("reload: %d %s", c.status, c.raw)
	}
	entries := map[string]float64{}
	for _, l := range c.body["lists"].([]any) {
		l := l.(map[string]any)
		entries[l["name"].(string)] = l["entries"].(float64)
	}
	if entries["l"] != 2 || entries["alipay"] < 1 || c.body["entries"].(float64) != entries["l"]+entries["alipay"] {
		t.Errorf("reload result: %s", c.raw)
	}
	if rcode("new2.example") != dns.RcodeNameError || rcode("old.example") != dns.RcodeSuccess {
		t.Error("the reloaded list is not served")
	}

	writeFile(t, dir, "c.yaml", "listen: [127.0.0.1:0]\nupstreams: ["+up.Addr+"]\nblocking:\n  mode: zeroip\n")
	api(t, d, "POST", "/api/lists/reload", "").wantError(t, http.StatusInternalServerError, "line 4: blocking.mode")
	if rcode("new2.example") != dns.RcodeNameError {
		t.Error("a refused config replaced the running one")
	}
	api(t, d, "GET", "/api/lists/reload", "").wantError(t, http.StatusMethodNotAllowed, "use POST")
}

// TestReadyz: ready when idle or when an upstream answers; 503 with the reason when the only
// upstream failed and none answered.
func TestReadyz(t *testing.T) {
	good := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dead := resolvertest.Start(t, resolvertest.Silent())
	cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nupstream_timeout: 200ms\nquery_timeout: 1s\n")
	ask := func(d *running) int {
		return resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("r.example", dns.TypeA, false)).Rcode
	}

	ok := start(t, "-config", cfg, "-upstream", good.Addr)
	if c := api(t, ok, "GET", "/readyz", ""); c.status != http.StatusOK || c.body["status"] != "ready" {
		t.Errorf("fresh instance: %d %s", c.status, c.raw)
	}
	if ask(ok) != dns.RcodeSuccess {
		t.Fatal("no answer")
	}
	if c := api(t, ok, "GET", "/readyz", ""); c.status != http.StatusOK {
		t.Errorf("answering upstream: %d %s", c.status, c.raw)
	}

	bad := start(t, "-config", cfg, "-upstream", dead.Addr)
	if c := api(t, bad, "GET", "/readyz", ""); c.status != http.StatusOK {
		t.Errorf("fresh instance, upstream never tried: %d %s", c.status, c.raw)
	}
	if ask(bad) != dns.RcodeServerFailure {
		t.Fatal("a dead upstream answered")
	}
	c := api(t, bad, "GET", "/readyz", "")
	reasons, _ := c.body["reasons"].([]any)
	if c.status != http.StatusServiceUnavailable || c.body["status"] != "not ready" || len(reasons) != 1 ||
		!strings.Contains(fmt.Sprint(reasons[0]), "no upstream answered") {
		t.Errorf("dead upstream after a failed query: %d %s", c.status, c.raw)
	}
}

// TestAdminStats: totals by outcome and the top blocked names and app clients, from two clients.
func TestAdminStats(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	list := writeFile(t, t.TempDir(), "ads.txt", "ads.example\n")
	d := start(t, "-upstream", up.Addr, "-blocklist", list)
	for range 3 {
		exchangeFrom(t, "127.0.0.2", d.dnsAddrs[0], "mobilegw.alipay.com")
	}
	exchangeFrom(t, "127.0.0.2", d.dnsAddrs[0], "api.intsig.net") // camscanner
	exchangeFrom(t, "127.0.0.3", d.dnsAddrs[0], "MobileGW.Alipay.com")
	for range 5 {
		exchangeFrom(t, "127.0.0.3", d.dnsAddrs[0], "x.ads.example") // no app
	}
	exchangeFrom(t, "127.0.0.3", d.dnsAddrs[0], "fine.example")

	c := api(t, d, "GET", "/api/stats?top=2", "")
	if c.status != http.StatusOK {
		t.Fatalf("stats: %d %s", c.status, c.raw)
	}
	var s admin.StatsReport
	if err := json.Unmarshal([]byte(c.raw), &s); err != nil {
		t.Fatal(err)
	}
	if s.Queries["blocked"] != 10 || s.Queries["forwarded"] != 1 || s.Queries["total"] != 11 {
		t.Errorf("queries %v", s.Queries)
	}
	wantNames := []admin.TopItem{{Name: "x.ads.example.", Count: 5}, {Name: "mobilegw.alipay.com.", Count: 4}}
	if fmt.Sprint(s.TopBlocked) != fmt.Sprint(wantNames) {
		t.Errorf("top blocked names %+v, want %+v", s.TopBlocked, wantNames)
	}
	wantClients := []admin.TopItem{{Client: "127.0.0.2", Count: 4}, {Client: "127.0.0.3", Count: 1}}
	if fmt.Sprint(s.TopAppClients) != fmt.Sprint(wantClients) {
		t.Errorf("top app clients %+v, want %+v", s.TopAppClients, wantClients)
	}
	if s.UptimeSeconds <= 0 || s.Started.IsZero() || s.Blocking.Paused {
		t.Errorf("uptime %v started %v blocking %+v", s.UptimeSeconds, s.Started, s.Blocking)
	}
	for _, bad := range []string{"0", "x", "100000"} {
		api(t, d, "GET", "/api/stats?top="+bad, "").wantError(t, http.StatusBadRequest, "top")
	}
}

// TestAdminCheck: /api/check explains a name from the running lists: verdict, deciding rule with
// its file and line, and the allow rule that overrides.
func TestAdminCheck(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	d := start(t, "-upstream", up.Addr)
	c := api(t, d, "GET", "/api/check?name=cdn.alipay.com", "")
	if c.status != http.StatusOK || c.body["blocked"] != true || c.body["list"] != "alipay" || c.body["rule"] != "alipay.com" || c.body["app"] != "alipay" {
		t.Errorf("blocked name: %d %s", c.status, c.raw)
	}
	rules, _ := c.body["rules"].([]any)
	if len(rules) != 1 {
		t.Fatalf("rules: %s", c.raw)
	}
	if r := rules[0].(map[string]any); r["decided"] != true || r["file"] != "configs/blocklists/apps/alipay.txt" || r["line"].(float64) < 1 || r["kind"] != "block" {
		t.Errorf("rule detail: %v", r)
	}
	if c := api(t, d, "GET", "/api/check?name=example.org", ""); c.body["blocked"] != false {
		t.Errorf("allowed name: %s", c.raw)
	}
	allow := writeFile(t, t.TempDir(), "allow.txt", "# exceptions\nopenapi.alipay.com\n")
	cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nallowlists:\n  - {name: ok, path: "+allow+", category: exceptions}\n")
	d2 := start(t, "-config", cfg, "-upstream", up.Addr)
	c = api(t, d2, "GET", "/api/check?name=x.openapi.alipay.com", "")
	by, _ := c.body["allowed_by"].(map[string]any)
	if c.body["blocked"] != false || by == nil || by["list"] != "ok" || by["file"] != allow || by["line"] != 2.0 || by["category"] != "exceptions" {
		t.Errorf("overridden name: %s", c.raw)
	}
	api(t, d, "GET", "/api/check", "").wantError(t, http.StatusBadRequest, "name")
	api(t, d, "GET", "/api/check?name=a..b", "").wantError(t, http.StatusBadRequest, "name")
}

// TestReportCommandToken: dnsfence report sends the token from -token-file.
func TestReportCommandToken(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "token", "r3port\n")
	cfg := writeFile(t, dir, "c.yaml", "listen: [127.0.0.1:0]\nhttp:\n  token_file: "+tokenFile+"\n")
	d := start(t, "-config", cfg, "-upstream", up.Addr)
	var out strings.Builder
	if err := run(t.Context(), []string{"report", "-http", d.httpAddr}, &out, io.Discard); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("report without the token: %v", err)
	}
	if err := run(t.Context(), []string{"report", "-http", d.httpAddr, "-token-file", tokenFile}, &out, io.Discard); err != nil {
		t.Errorf("report with the token: %v", err)
	}
	if !strings.Contains(out.String(), "dnsfence report since") {
		t.Errorf("report output: %s", out.String())
	}
}

// TestAdminAPIOff: with http.api false, /api/ and /report are not served and a non-loopback
// listen needs no token (metrics and probes only).
func TestAdminAPIOff(t *testing.T) {
	cfg, err := configs.Parse([]byte("http:\n  listen: 0.0.0.0:9253\n  api: false\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("api off on a public listen: %v", err)
	}
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	path := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nhttp:\n  api: false\n")
	d := start(t, "-config", path, "-upstream", up.Addr)
	for _, p := range []string{"/api/stats", "/report"} {
		resp, err := http.Get("http://" + d.httpAddr + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s with the API off: %d", p, resp.StatusCode)
		}
	}
	if v := value(scrape(t, d.httpAddr), "dnsfence_build_info"); v != 1 {
		t.Errorf("metrics not served with the API off")
	}
}

// TestPProf: the profiler is off by default; http.pprof serves it behind the API token, and on a
// public listen it needs one like the API.
func TestPProf(t *testing.T) {
	cfg, err := configs.Parse([]byte("http:\n  listen: 0.0.0.0:9253\n  api: false\n  pprof: true\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "line 2: http.listen") || !strings.Contains(err.Error(), "the profiler (/debug/pprof/)") {
		t.Errorf("pprof on a public listen without a token: %v", err)
	}
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	off := start(t, "-config", writeFile(t, dir, "off.yaml", "listen: [127.0.0.1:0]\n"), "-upstream", up.Addr)
	if c := api(t, off, http.MethodGet, "/debug/pprof/", ""); c.status != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ by default: %d, want 404", c.status)
	}
	on := start(t, "-config", writeFile(t, dir, "on.yaml", "listen: [127.0.0.1:0]\nhttp:\n  pprof: true\n  token: s3cret\n"), "-upstream", up.Addr)
	if c := api(t, on, http.MethodGet, "/debug/pprof/heap?debug=1", ""); c.status != http.StatusUnauthorized {
		t.Errorf("profile without the token: %d, want 401", c.status)
	}
	c := api(t, on, http.MethodGet, "/debug/pprof/heap?debug=1", "s3cret")
	if c.status != http.StatusOK || !strings.Contains(c.raw, "heap profile:") {
		t.Errorf("heap profile: %d %.200s", c.status, c.raw)
	}
	c = api(t, on, http.MethodGet, "/debug/pprof/goroutine?debug=1", "s3cret")
	if c.status != http.StatusOK || !strings.Contains(c.raw, "goroutine profile:") {
		t.Errorf("goroutine profile: %d %.200s", c.status, c.raw)
	}
}
