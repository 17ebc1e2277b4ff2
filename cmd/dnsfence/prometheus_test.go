package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

const (
	promConfigPath    = "../../configs/prometheus/prometheus.yml"
	promRulesPath     = "../../configs/prometheus/rules.yml"
	promRulesTestPath = "../../configs/prometheus/rules_test.yml"
	dashboardPath     = "../../configs/grafana/dnsfence.json"
)

// needPrometheus returns the paths of prometheus and promtool (Debian package prometheus). Like
// needTool, it skips outside CI and fails in CI, where .ci/run installs them.
func needPrometheus(t *testing.T) (prom, promtool string) {
	t.Helper()
	for _, name := range []string{"prometheus", "promtool"} {
		p, err := exec.LookPath(name)
		if err != nil {
			missingTool(t, name, "prometheus")
		}
		if name == "prometheus" {
			prom = p
		} else {
			promtool = p
		}
	}
	return prom, promtool
}

// Only the parts of a Grafana dashboard the tests look at.
type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	SchemaVersion int    `json:"schemaVersion"`
	UID           string `json:"uid"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *dsRef          `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *dsRef `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *dsRef `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row keeps its panels here
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return &d
}

// allPanels returns every Prometheus panel, those inside rows included, rows excluded (the SQL
// panels on the history's PostgreSQL are checked in history_test.go).
func (d *dashboard) allPanels() []dashPanel {
	var out []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if p.Type != "row" && !isHistoryPanel(p) {
				out = append(out, p)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

type namedExpr struct{ name, expr string }

// exprs returns every query of the dashboard, named "panel title/refId", as written.
func (d *dashboard) exprs() []namedExpr {
	var out []namedExpr
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out = append(out, namedExpr{p.Title + "/" + tg.RefID, tg.Expr})
		}
	}
	return out
}

// grafanaVars substitutes the dashboard variables and Grafana's interval variables the way Grafana
// would for one selected job and instance.
func grafanaVars(expr, job, instance string) string {
	return strings.NewReplacer(
		"$__rate_interval", "1m", "$__interval", "15s", "$__range", "5m",
		"$job", job, "$instance", instance,
	).Replace(expr)
}

// selectorRE finds the metric selectors of an expression: dnsfence's own metrics, the Go and
// process collectors' and Prometheus's up, with their label matchers if any.
var selectorRE = regexp.MustCompile(`\b((?:dnsfence|process|go)_[a-zA-Z0-9_]+|up)\b(\{[^}]*\})?`)

// rangeRE finds range selectors ([5m], [$__rate_interval]).
var rangeRE = regexp.MustCompile(`\[([^\]]+)\]`)

// TestPrometheusDashboard checks the dashboard without Grafana: importable shape, the datasource,
// job and instance variables, every selector filtered by them, Grafana's rate intervals, and
// only metrics the README documents.
func TestPrometheusDashboard(t *testing.T) {
	d := loadDashboard(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if d.SchemaVersion < 36 || d.UID == "" {
		t.Errorf("schemaVersion %d, uid %q", d.SchemaVersion, d.UID)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs: %+v, want one prometheus datasource", d.Inputs)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			var q string
			_ = json.Unmarshal(v.Query, &q)
			vars[v.Name] = v.Type + ":" + q
		case "query":
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s: datasource %+v, want ${datasource}", v.Name, v.Datasource)
			}
			vars[v.Name] = v.Definition
		}
	}
	for name, want := range map[string]string{
		"datasource": "datasource:prometheus",
		"job":        "label_values(dnsfence_build_info, job)",
		"instance":   `label_values(dnsfence_build_info{job=~"$job"}, instance)`,
	} {
		if vars[name] != want {
			t.Errorf("variable %s = %q, want %q", name, vars[name], want)
		}
	}

	ids := map[int]bool{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)

	panels := d.allPanels()
	if len(panels) < 10 {
		t.Fatalf("%d panels", len(panels))
	}
	for _, p := range panels {
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q/%s: expr %q, datasource %+v", p.Title, tg.RefID, tg.Expr, tg.Datasource)
			}
		}
	}
	for _, e := range d.exprs() {
		sels := selectorRE.FindAllStringSubmatch(e.expr, -1)
		if len(sels) == 0 {
			t.Errorf("%s: no metric in %q", e.name, e.expr)
		}
		for _, s := range sels {
			if !strings.Contains(s[2], `job=~"$job"`) || !strings.Contains(s[2], `instance=~"$instance"`) {
				t.Errorf("%s: %s%s is not filtered by job and instance", e.name, s[1], s[2])
			}
			if name, ok := strings.CutPrefix(s[1], "dnsfence_"); ok {
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					name = strings.TrimSuffix(name, suffix)
				}
				if !strings.Contains(string(readme), "`dnsfence_"+name+"`") {
					t.Errorf("%s: dnsfence_%s is not in the README's metrics table", e.name, name)
				}
			}
		}
		for _, r := range rangeRE.FindAllStringSubmatch(e.expr, -1) {
			if r[1] != "$__rate_interval" && r[1] != "$__range" {
				t.Errorf("%s: range [%s], want $__rate_interval or $__range", e.name, r[1])
			}
		}
	}
}

// TestPrometheusRules runs promtool on the shipped config and rules and the rules' unit tests.
func TestPrometheusRules(t *testing.T) {
	_, promtool := needPrometheus(t)
	for _, args := range [][]string{
		{"check", "config", promConfigPath},
		{"check", "rules", promRulesPath},
		{"test", "rules", promRulesTestPath},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// promClient queries a Prometheus server's HTTP API.
type promClient struct {
	t    *testing.T
	base string
}

type promSeries struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSeries) value() float64 {
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// get fetches path and decodes the API envelope's data into data; it returns the API's error.
func (c *promClient) get(path string, data any) error {
	c.t.Helper()
	resp, err := http.Get(c.base + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		c.t.Fatalf("GET %s: %s: %v", path, resp.Status, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", env.Status, env.Error)
	}
	if err := json.Unmarshal(env.Data, data); err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	return nil
}

// query runs an instant query; an error means it did not parse or evaluate.
func (c *promClient) query(expr string) ([]promSeries, error) {
	c.t.Helper()
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := c.get("/api/v1/query?query="+url.QueryEscape(expr), &data); err != nil {
		return nil, err
	}
	var out []promSeries
	switch data.ResultType {
	case "vector":
		if err := json.Unmarshal(data.Result, &out); err != nil {
			c.t.Fatal(err)
		}
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			c.t.Fatal(err)
		}
		out = []promSeries{{Value: v}}
	default:
		return nil, fmt.Errorf("result type %s", data.ResultType)
	}
	return out, nil
}

// scalar runs expr, which must give exactly one series, and returns its value (NaN if none).
func (c *promClient) scalar(expr string) float64 {
	c.t.Helper()
	res, err := c.query(expr)
	if err != nil {
		c.t.Fatalf("%s: %v", expr, err)
	}
	if len(res) != 1 {
		return math.NaN()
	}
	return res[0].value()
}

// waitFor polls cond every 100ms until it holds, failing the test after timeout with cond's last
// explanation.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promTestConfig turns the shipped prometheus.yml into one for the test: 1s scrape and rule
// evaluation, the repository's rules.yml, and the dnsfence job pointed at targets.
func promTestConfig(t *testing.T, targets ...string) []byte {
	t.Helper()
	data, err := os.ReadFile(promConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs(promRulesPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg["global"] = map[string]any{"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
	if fmt.Sprint(cfg["rule_files"]) != "[rules.yml]" {
		t.Errorf("prometheus.yml rule_files: %v, want [rules.yml]", cfg["rule_files"])
	}
	cfg["rule_files"] = []any{rules}
	found := false
	for _, sc := range cfg["scrape_configs"].([]any) {
		job := sc.(map[string]any)
		if job["job_name"] != "dnsfence" {
			continue
		}
		found = true
		if got := fmt.Sprint(job["static_configs"]); got != "[map[targets:[127.0.0.1:9253]]]" {
			t.Errorf("prometheus.yml dnsfence targets: %s, want 127.0.0.1:9253 (the default http.listen)", got)
		}
		job["static_configs"] = []any{map[string]any{"targets": targets}}
	}
	if !found {
		t.Fatal("prometheus.yml has no job dnsfence")
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startPrometheus runs prometheus with config on a free loopback port and waits until it is ready.
func startPrometheus(t *testing.T, prom, config string) *promClient {
	t.Helper()
	dir := filepath.Dir(config)
	addr := resolvertest.FreeTCPAddr(t)
	logs := &syncBuffer{}
	cmd := exec.Command(prom, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs)
		}
	})
	c := &promClient{t: t, base: "http://" + addr}
	waitFor(t, 20*time.Second, "prometheus /-/ready", func() (bool, string) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("prometheus exited: %v\n%s", err, logs)
		default:
		}
		resp, err := http.Get(c.base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return c
}

type mixQuery struct {
	name  string
	qtype uint16
	net   string
	rcode int
}

// queryMix is one round of client traffic: forwarded names (some NXDOMAIN and SERVFAIL from the
// upstream, the failures between successes so the upstream stays in rotation), names of the
// built-in app lists and of the local list, and a zone transfer that is refused.
func queryMix(round int) []mixQuery {
	n := func(s string) string { return fmt.Sprintf("%s-%d.example", s, round) }
	return []mixQuery{
		{n("fwd1"), dns.TypeA, "udp", dns.RcodeSuccess},
		{n("fail1") + ".servfail.example", dns.TypeA, "udp", dns.RcodeServerFailure},
		{n("fwd2"), dns.TypeA, "udp", dns.RcodeSuccess},
		{n("fail2") + ".servfail.example", dns.TypeA, "udp", dns.RcodeServerFailure},
		{n("fwd3"), dns.TypeA, "udp", dns.RcodeSuccess},
		{n("fail3") + ".servfail.example", dns.TypeA, "udp", dns.RcodeServerFailure},
		{n("fwd4"), dns.TypeA, "tcp", dns.RcodeSuccess},
		{n("fwd5"), dns.TypeAAAA, "udp", dns.RcodeSuccess},
		{n("fwd6"), dns.TypeA, "tcp", dns.RcodeSuccess},
		{n("missing1") + ".nx.example", dns.TypeA, "udp", dns.RcodeNameError},
		{n("missing2") + ".nx.example", dns.TypeA, "udp", dns.RcodeNameError},
		{"openapi.alipay.com", dns.TypeA, "udp", dns.RcodeNameError},
		{"api.intsig.net", dns.TypeA, "udp", dns.RcodeNameError},
		{"qpay.qq.com", dns.TypeA, "udp", dns.RcodeNameError},
		{"msf.3g.qq.com", dns.TypeAAAA, "udp", dns.RcodeNameError},
		{"blocked.example", dns.TypeA, "tcp", dns.RcodeNameError},
		{"example", dns.TypeAXFR, "tcp", dns.RcodeRefused},
	}
}

// TestPrometheusScrapesDashboardAndRules runs the real binary and a real Prometheus that scrapes
// it with the shipped config and rules, sends a query mix, and then runs every dashboard and rule
// expression through Prometheus: each must parse, each dashboard query must return series, the
// rules must evaluate without errors, and the alerts the scenario provokes must be pending.
func TestPrometheusScrapesDashboardAndRules(t *testing.T) {
	prom, promtool := needPrometheus(t)
	start := time.Now()

	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if len(r.Question) == 1 {
			name := strings.ToLower(r.Question[0].Name)
			m := new(dns.Msg)
			switch {
			case strings.HasSuffix(name, ".servfail.example."):
				_ = w.WriteMsg(m.SetRcode(r, dns.RcodeServerFailure))
				return
			case strings.HasSuffix(name, ".nx.example."):
				_ = w.WriteMsg(m.SetRcode(r, dns.RcodeNameError))
				return
			}
		}
		resolvertest.A("192.0.2.53").ServeDNS(w, r)
	}))
	// Prometheus first: it takes about 5s to start scraping new targets, as long as building and
	// starting dnsfence may take, so dnsfence gets an HTTP address chosen up front.
	dir := t.TempDir()
	httpAddr := resolvertest.FreeTCPAddr(t)
	dead := resolvertest.FreeTCPAddr(t) // a second target in the job that nothing listens on: DnsfenceDown
	config := writeFile(t, dir, "prometheus.yml", string(promTestConfig(t, httpAddr, dead)))
	if out, err := exec.Command(promtool, "check", "config", config).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config (generated): %v\n%s", err, out)
	}
	if out, err := exec.Command(promtool, "check", "rules", promRulesPath).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	pc := startPrometheus(t, prom, config)

	list := writeFile(t, dir, "local.txt", "blocked.example\n")
	p := startBinary(t, "-listen", "127.0.0.1:0", "-http", httpAddr, "-upstream", up.Addr, "-blocklist", list)
	waitFor(t, 15*time.Second, "the dnsfence target to be up", func() (bool, string) {
		var data struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := pc.get("/api/v1/targets", &data); err != nil {
			return false, err.Error()
		}
		for _, tg := range data.ActiveTargets {
			if tg.Labels["instance"] == p.httpAddr {
				return tg.Health == "up" && tg.Labels["job"] == "dnsfence", tg.Health + " " + tg.LastError
			}
		}
		return false, fmt.Sprintf("no target %s in %+v", p.httpAddr, data.ActiveTargets)
	})

	inst := fmt.Sprintf(`job="dnsfence", instance=%q`, p.httpAddr)
	// waitQueries waits until Prometheus has scraped total queries.
	waitQueries := func(total int) {
		t.Helper()
		expr := fmt.Sprintf("sum(dnsfence_queries_total{%s})", inst)
		waitFor(t, 10*time.Second, fmt.Sprintf("%s == %d", expr, total), func() (bool, string) {
			v := pc.scalar(expr)
			return v == float64(total), fmt.Sprint(v)
		})
	}
	sent := 0
	send := func(round int) {
		t.Helper()
		for _, q := range queryMix(round) {
			r := resolvertest.Exchange(t, q.net, p.dnsAddr, resolvertest.Query(q.name, q.qtype, true))
			if r.Rcode != q.rcode {
				t.Fatalf("%s %s over %s: %s, want %s", q.name, dns.TypeToString[q.qtype], q.net,
					dns.RcodeToString[r.Rcode], dns.RcodeToString[q.rcode])
			}
			sent++
		}
	}

	// Round 1, then make the local list fail to reload twice (the first failure creates the
	// series, the second is an increase the alert can see), then round 2: every counter the
	// panels rate has a sample before and after an increase.
	send(1)
	waitQueries(sent)
	if err := os.Remove(list); err != nil {
		t.Fatal(err)
	}
	failures := fmt.Sprintf(`sum(dnsfence_blocklist_reloads_total{%s, list="local", result="failure"})`, inst)
	var seen float64
	for range 2 {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "a scraped reload failure of list local", func() (bool, string) {
			v := pc.scalar(failures)
			if v > seen {
				seen = v
				return true, ""
			}
			return false, fmt.Sprint(v)
		})
	}
	send(2)
	waitQueries(sent)
	// And one more scrape after that.
	stamp := fmt.Sprintf("timestamp(dnsfence_build_info{%s})", inst)
	t0 := pc.scalar(stamp)
	waitFor(t, 10*time.Second, "another scrape", func() (bool, string) {
		v := pc.scalar(stamp)
		return v > t0, fmt.Sprint(v)
	})

	checkAlerts(t, pc, p.httpAddr, dead)

	// Every dashboard query, for the selected job and instance, returns series.
	d := loadDashboard(t)
	var selectors []string
	var nanOnly []string
	values := map[string][]promSeries{}
	for _, e := range d.exprs() {
		expr := grafanaVars(e.expr, "dnsfence", p.httpAddr)
		res, err := pc.query(expr)
		if err != nil {
			t.Errorf("dashboard %s: %s: %v", e.name, expr, err)
			continue
		}
		if len(res) == 0 && strings.Contains(expr, "dnsfence_egress_") {
			continue // egress needs root and its own network namespace: TestEgressTopology scrapes these
		}
		if len(res) == 0 {
			t.Errorf("dashboard %s: no series: %s", e.name, expr)
			continue
		}
		values[e.name] = res
		if !slices.ContainsFunc(res, func(s promSeries) bool { return !math.IsNaN(s.value()) }) {
			nanOnly = append(nanOnly, e.name)
		}
		selectors = append(selectors, selectorRE.FindAllString(expr, -1)...)
		// Another job selects nothing.
		if res, err := pc.query(grafanaVars(e.expr, "no-such-job", p.httpAddr)); err != nil || len(res) != 0 {
			t.Errorf("dashboard %s: job no-such-job gives %d series, %v", e.name, len(res), err)
		}
	}
	if len(nanOnly) > 0 {
		t.Logf("dashboard queries whose series are all NaN (0/0: nothing to divide yet): %s", strings.Join(nanOnly, ", "))
	}
	checkPanelValues(t, values)

	// The variables' queries find this job and instance.
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	want := map[string]string{"job": "dnsfence", "instance": p.httpAddr}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		res, err := pc.query(grafanaVars(m[1], "dnsfence", p.httpAddr))
		if err != nil || !slices.ContainsFunc(res, func(s promSeries) bool { return s.Metric[m[2]] == want[v.Name] }) {
			t.Errorf("variable %s: %s has no %s=%q: %v %v", v.Name, m[1], m[2], want[v.Name], res, err)
		}
	}

	// Every rule expression evaluates (alerts are rightly empty when nothing is wrong; which ones
	// fire was checked above).
	for _, r := range loadRules(t) {
		res, err := pc.query(r.expr)
		if err != nil {
			t.Errorf("rule %s: %v", r.name, err)
			continue
		}
		t.Logf("rule %s: %d series", r.name, len(res))
		selectors = append(selectors, selectorRE.FindAllString(r.expr, -1)...)
	}
	// Every metric the dashboard and the rules select exists.
	slices.Sort(selectors)
	for _, s := range slices.Compact(selectors) {
		res, err := pc.query(s)
		switch {
		case err != nil:
			t.Errorf("selector %s: %v", s, err)
		case len(res) == 0 && strings.HasPrefix(s, "dnsfence_egress_"):
			t.Logf("selector %s: no series (egress is off here; TestEgressTopology covers it)", s)
		case len(res) == 0 && strings.HasPrefix(s, "dnsfence_blocklist_refresh_interval_seconds"):
			t.Logf("selector %s: no series (only URL lists have a refresh interval)", s)
		case len(res) == 0:
			t.Errorf("selector %s: no series", s)
		}
	}
	t.Logf("%d queries sent; took %v", sent, time.Since(start).Round(time.Millisecond))
}

type rule struct{ name, expr string }

func loadRules(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile(promRulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	var out []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, rule{r.Alert + r.Record, r.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatal("no rules")
	}
	return out
}

// checkAlerts waits until every rule has evaluated without error and the alerts this scenario
// provokes are pending: the dead target is down, the SERVFAIL share is above 5%, and the local
// list failed to reload. No other alert may be active.
func checkAlerts(t *testing.T, pc *promClient, instance, dead string) {
	t.Helper()
	rules := len(loadRules(t))
	want := map[string]string{
		"DnsfenceDown":                   "instance=" + dead,
		"DnsfenceServfailRatioHigh":      "instance=" + instance,
		"DnsfenceBlocklistReloadFailing": "instance=" + instance + " list=local",
	}
	waitFor(t, 15*time.Second, "the rules to evaluate and the expected alerts to be pending", func() (bool, string) {
		var data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
					Alerts    []struct {
						Labels map[string]string `json:"labels"`
						State  string            `json:"state"`
					} `json:"alerts"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := pc.get("/api/v1/rules", &data); err != nil {
			return false, err.Error()
		}
		var problems []string
		n := 0
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				n++
				if r.LastError != "" {
					t.Fatalf("rule %s: %s", r.Name, r.LastError)
				}
				if r.Health != "ok" {
					problems = append(problems, r.Name+" health "+r.Health)
				}
				var got []string
				for _, a := range r.Alerts {
					s := "instance=" + a.Labels["instance"]
					if l := a.Labels["list"]; l != "" {
						s += " list=" + l
					}
					got = append(got, s+" "+a.State)
				}
				exp := ""
				if w, ok := want[r.Name]; ok {
					exp = w + " pending"
				}
				if strings.Join(got, ", ") != exp {
					problems = append(problems, fmt.Sprintf("%s: alerts %q, want %q", r.Name, got, exp))
				}
			}
		}
		if n != rules {
			problems = append(problems, fmt.Sprintf("%d rules loaded", n))
		}
		return len(problems) == 0, strings.Join(problems, "; ")
	})
}

// checkPanelValues checks that the query mix shows where it should: the label values each
// panel must show with a rate above zero, and a block ratio strictly between 0 and 1.
func checkPanelValues(t *testing.T, values map[string][]promSeries) {
	t.Helper()
	for panel, want := range map[string][]string{
		"Query rate by outcome/A":     {"outcome=forwarded", "outcome=blocked", "outcome=refused", "outcome=error"},
		"Replies by rcode/A":          {"rcode=NOERROR", "rcode=NXDOMAIN", "rcode=SERVFAIL", "rcode=REFUSED"},
		"Blocked by app/A":            {"app=alipay", "app=camscanner", "app=qq", "app=qq-wallet", "app=other"},
		"Blocked by list/A":           {"list=alipay", "list=local"},
		"Top lists/A":                 {"list=alipay", "list=local"},
		"Upstream errors by reason/A": {"reason=servfail"},
		"List reload failures/A":      {"list=local"},
	} {
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if !slices.ContainsFunc(values[panel], func(s promSeries) bool { return s.Metric[k] == v && s.value() > 0 }) {
				t.Errorf("dashboard %s: no %s above 0 in %v", panel, w, values[panel])
			}
		}
	}
	if r := values["Block ratio/A"]; len(r) != 1 || !(r[0].value() > 0 && r[0].value() < 1) {
		t.Errorf("block ratio %v, want one value in (0, 1)", r)
	}
}
