package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/configs"
	"github.com/dnsfence/dnsfence/resolver/history"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// historyConfig writes a config for the real binary with its history in path.
func historyConfig(t *testing.T, dir, upstream, history string) string {
	t.Helper()
	return writeFile(t, dir, "dnsfence.yaml", `listen: ["127.0.0.1:0"]
upstreams: ["`+upstream+`"]
http:
  listen: 127.0.0.1:0
records: ["laptop.home.arpa. 300 IN A 127.0.0.1"]
history:
`+history)
}

// reportJSON runs `dnsfence report -config cfg -since … -json` (the store read directly).
func reportJSON(t *testing.T, cfg string, args ...string) history.Summary {
	t.Helper()
	stdout, stderr, code := runBinary(t, append([]string{"report", "-config", cfg, "-json"}, args...)...)
	if code != 0 {
		t.Fatalf("report exit %d: %s", code, stderr)
	}
	var s history.Summary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("report output: %v\n%s", err, stdout)
	}
	return s
}

func countFor(s history.Summary, app, outcome string) (n int64) {
	for _, e := range s.Entries {
		if e.App == app && e.Outcome == outcome {
			n += e.Count
		}
	}
	return n
}

// waitReport polls the report until ok holds.
func waitReport(t *testing.T, cfg string, ok func(history.Summary) bool, args ...string) history.Summary {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := reportJSON(t, cfg, args...)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("report never matched; last: %+v", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stopBinary(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

func blocked(t *testing.T, addr, name string) {
	t.Helper()
	r := resolvertest.Exchange(t, "udp", addr, resolvertest.Query(name, dns.TypeA, false))
	if r.Rcode != dns.RcodeNameError {
		t.Fatalf("%s: rcode %s, want NXDOMAIN (blocked)", name, dns.RcodeToString[r.Rcode])
	}
}

// TestBinaryHistorySQLite: the real binary records blocked attempts in its SQLite file; the
// report reads it with the server stopped; a restart keeps the history; old rows are pruned;
// /api/history and /report?since serve the same.
func TestBinaryHistorySQLite(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	db := filepath.Join(dir, "state", "history.db")
	cfg := historyConfig(t, dir, up.Addr, "  path: "+db+"\n  flush_interval: 100ms\n  retention: 90d\n  instance: router\n")

	// An attempt from 100 days ago, past the retention: the first flush prunes it.
	old := time.Now().Add(-100 * 24 * time.Hour).Truncate(time.Hour)
	s, err := history.OpenSQLite(context.Background(), db, history.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), []history.Row{{Bucket: old, Instance: "router", Client: "192.0.2.99", App: "qq",
		List: "qq", Outcome: "blocked", Count: 5, FirstSeen: old, LastSeen: old}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := countFor(reportJSON(t, cfg, "-since", "200d"), "qq", "blocked"); got != 5 {
		t.Fatalf("seeded old row: %d", got)
	}

	p := startBinary(t, "-config", cfg)
	for range 3 {
		blocked(t, p.dnsAddr, "www.alipay.com")
	}
	blocked(t, p.dnsAddr, "pay.weixin.qq.com")
	sum := waitReport(t, cfg, func(s history.Summary) bool {
		return countFor(s, "alipay", "blocked") == 3 && countFor(s, "wechat-pay", "blocked") == 1 && countFor(s, "qq", "blocked") == 0
	}, "-since", "200d")
	for _, e := range sum.Entries {
		if e.Client != "127.0.0.1" || e.Name != "laptop.home.arpa" || len(e.Instances) != 1 || e.Instances[0] != "router" {
			t.Errorf("entry %+v: want client 127.0.0.1 named laptop.home.arpa from instance router", e)
		}
	}

	// The admin server serves the same: /api/history as JSON, /report?since as text.
	get := func(path string) string {
		resp, err := http.Get("http://" + p.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s %s", path, resp.Status, b)
		}
		return string(b)
	}
	var api history.Summary
	if err := json.Unmarshal([]byte(get("/api/history?since=7d&app=alipay")), &api); err != nil {
		t.Fatal(err)
	}
	if len(api.Entries) != 1 || api.Entries[0].Count != 3 {
		t.Errorf("/api/history?app=alipay: %+v", api)
	}
	if txt := get("/report?since=7d"); !strings.Contains(txt, "laptop.home.arpa") || !strings.Contains(txt, "alipay") {
		t.Errorf("/report?since=7d:\n%s", txt)
	}
	if txt := get("/report"); !strings.Contains(txt, "Top clients") {
		t.Errorf("/report without since is no longer the report since start:\n%s", txt)
	}
	if csv := get("/api/history?since=7d&format=csv"); !strings.HasPrefix(csv, "client,name,app,list,outcome,count") {
		t.Errorf("csv:\n%s", csv)
	}
	m := scrape(t, p.httpAddr)
	if v := value(m, "dnsfence_history_rows_written_total"); v < 2 {
		t.Errorf("rows_written_total %v", v)
	}
	if v := value(m, "dnsfence_history_store_up"); v != 1 {
		t.Errorf("store_up %v", v)
	}
	if v := value(m, "dnsfence_history_pruned_rows_total"); v != 1 {
		t.Errorf("pruned_rows_total %v, want the one old row", v)
	}

	// Shutdown flushes; a restart adds to the same rows.
	blocked(t, p.dnsAddr, "alipay.com")
	stopBinary(t, p)
	if got := countFor(reportJSON(t, cfg, "-since", "1d"), "alipay", "blocked"); got != 4 {
		t.Errorf("after shutdown: alipay %d, want 4 (the last attempt flushed at exit)", got)
	}
	p = startBinary(t, "-config", cfg)
	blocked(t, p.dnsAddr, "www.alipay.com")
	waitReport(t, cfg, func(s history.Summary) bool { return countFor(s, "alipay", "blocked") == 5 }, "-since", "1d")
	// Filters.
	if s := reportJSON(t, cfg, "-since", "1d", "-app", "wechat-pay"); len(s.Entries) != 1 || s.Entries[0].App != "wechat-pay" {
		t.Errorf("-app wechat-pay: %+v", s)
	}
	if s := reportJSON(t, cfg, "-since", "1d", "-client", "192.0.2.1"); len(s.Entries) != 0 {
		t.Errorf("-client 192.0.2.1: %+v", s)
	}
	stdout, _, code := runBinary(t, "report", "-config", cfg, "-since", "1d", "-csv")
	if code != 0 || !strings.Contains(stdout, "127.0.0.1,laptop.home.arpa,alipay,alipay,blocked,5,") {
		t.Errorf("report -csv (exit %d):\n%s", code, stdout)
	}
}

// TestBinaryHistoryCorrupt: a corrupt history file is reported and moved aside, a fresh one
// takes the attempts, and DNS serves throughout.
func TestBinaryHistoryCorrupt(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	db := filepath.Join(dir, "history.db")
	junk := strings.Repeat("not a database at all\n", 300)
	writeFile(t, dir, "history.db", junk)
	cfg := historyConfig(t, dir, up.Addr, "  path: "+db+"\n  flush_interval: 100ms\n")
	p := startBinary(t, "-config", cfg)
	r := resolvertest.Exchange(t, "udp", p.dnsAddr, resolvertest.Query("forwarded.example", dns.TypeA, false))
	if len(r.Answer) != 1 {
		t.Fatalf("DNS does not serve: %v", r)
	}
	blocked(t, p.dnsAddr, "www.alipay.com")
	p.waitLog(t, "history database is corrupt")
	moved, _ := filepath.Glob(db + ".corrupt-*")
	if len(moved) != 1 {
		t.Fatalf("moved aside: %v", moved)
	}
	if b, _ := os.ReadFile(moved[0]); string(b) != junk {
		t.Error("the corrupt file was not kept as it was")
	}
	waitReport(t, cfg, func(s history.Summary) bool { return countFor(s, "alipay", "blocked") == 1 }, "-since", "1d")
}

// TestBinaryHistoryOff: with history.enabled false nothing is written and the report says so.
func TestBinaryHistoryOff(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	db := filepath.Join(dir, "history.db")
	cfg := historyConfig(t, dir, up.Addr, "  enabled: false\n  path: "+db+"\n")
	p := startBinary(t, "-config", cfg)
	blocked(t, p.dnsAddr, "www.alipay.com")
	stopBinary(t, p)
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("history file written with history off: %v", err)
	}
	_, stderr, code := runBinary(t, "report", "-config", cfg, "-since", "1d")
	if code == 0 || !strings.Contains(stderr, "history is off") {
		t.Errorf("report with history off: exit %d %s", code, stderr)
	}
}

func TestHistoryConfigValidation(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"history:\n  retention: 7 days\n", "history.retention"},
		{"history:\n  bucket: 7m\n", "history.bucket"},
		{"history:\n  postgres_url: mysql://x/y\n", "history.postgres_url"},
		{"history:\n  max_buffered_rows: -1\n", "history.max_buffered_rows"},
	} {
		cfg, err := configs.Parse([]byte("listen: [127.0.0.1:53]\n"+tc.yaml), "test.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a problem with %s", tc.yaml, err, tc.want)
		}
	}
	cfg, _ := configs.Parse([]byte("listen: [127.0.0.1:53]\nhistory:\n  retention: 2w\n  postgres_url: postgres://u:secret@db/h\n"), "t")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := cfg.DescribeHistory(); strings.Contains(d, "secret") {
		t.Errorf("describeHistory leaks the password: %s", d)
	}
}

// isHistoryPanel: a dashboard panel on the history's PostgreSQL, not on Prometheus.
func isHistoryPanel(p dashPanel) bool {
	return p.Datasource != nil && p.Datasource.Type == "grafana-postgresql-datasource"
}

// TestDashboardDevicesPanel: the Devices table reads the attempts table through the History
// data source variable, over the dashboard's time range, with the columns the store has.
func TestDashboardDevicesPanel(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type, Title string
			Datasource  *dsRef `json:"datasource"`
			Targets     []struct {
				RawSQL     string `json:"rawSql"`
				Format     string `json:"format"`
				Datasource *dsRef `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	hasVar := false
	for _, v := range d.Templating.List {
		hasVar = hasVar || (v.Name == "history" && v.Type == "datasource" && string(v.Query) == `"grafana-postgresql-datasource"`)
	}
	if !hasVar {
		t.Error("no datasource variable history of type grafana-postgresql-datasource")
	}
	found := false
	for _, p := range d.Panels {
		if p.Title != "Devices" {
			continue
		}
		found = true
		if p.Type != "table" || p.Datasource == nil || p.Datasource.UID != "${history}" || len(p.Targets) != 1 {
			t.Fatalf("Devices panel: %+v", p)
		}
		tg := p.Targets[0]
		for _, want := range []string{"FROM attempts", "$__timeFilter(last_seen)", "client", "app", "outcome", "SUM(count)", "instance"} {
			if !strings.Contains(tg.RawSQL, want) {
				t.Errorf("Devices SQL lacks %q:\n%s", want, tg.RawSQL)
			}
		}
		if tg.Format != "table" || tg.Datasource == nil || tg.Datasource.UID != "${history}" {
			t.Errorf("Devices target: %+v", tg)
		}
	}
	if !found {
		t.Error("no Devices panel")
	}
}

// TestHistoryConfigEqual: two parses of the same history section compare equal, so an unchanged
// config file is not taken for a change that needs a restart.
func TestHistoryConfigEqual(t *testing.T) {
	data := []byte("listen: [127.0.0.1:53]\nhistory:\n  enabled: true\n  retention: 30d\n")
	a, err := configs.Parse(data, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := configs.Parse(data, "a")
	if !a.Equal(b) || len(configs.RestartNeeded(a, b)) != 0 {
		t.Errorf("same file: equal %v, restart needed for %v", a.Equal(b), configs.RestartNeeded(a, b))
	}
	off, _ := configs.Parse([]byte("listen: [127.0.0.1:53]\nhistory:\n  enabled: false\n"), "b")
	if !a.HistoryEnabled() || off.HistoryEnabled() || !(&configs.Config{}).HistoryEnabled() {
		t.Error("history.enabled: want on when true or unset, off when false")
	}
	if got := configs.RestartNeeded(a, off); len(got) != 1 || got[0] != "history" {
		t.Errorf("restartNeeded = %v, want [history]", got)
	}
}
