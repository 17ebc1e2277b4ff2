package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

var (
	promSelectorRE = regexp.MustCompile(`(dnsfence_[a-z_]+)(\{[^}]*\})?`)
	promMatcherRE  = regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
)

// familyName maps a series name as PromQL uses it to its metric family (histogram suffixes).
func familyName(mfs map[string]*dto.MetricFamily, name string) string {
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if _, hist := mfs[base]; hist {
				return base
			}
		}
	}
	return name
}

// TestDashboardAndAlertSeriesExistAtStart: every dnsfence_ series a shipped dashboard panel or
// alert rule reads exists in the first scrape of a server that has answered nothing yet (with
// zeros), including the label values its selectors ask for, so no panel starts as "No data" and
// no alert waits for its first event to be able to evaluate.
func TestDashboardAndAlertSeriesExistAtStart(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	ls := newListServer(t, "remote.example\n")
	dir := t.TempDir()
	local := writeFile(t, dir, "local.txt", "local.example\n")
	cfg := writeFile(t, dir, "dnsfence.yaml", `
listen: ["127.0.0.1:0"]
upstreams: ["`+up.Addr+`"]
downloads: {cache_dir: `+filepath.Join(dir, "cache")+`}
blocklists:
  - {name: local, path: `+local+`}
  - {name: remote, url: `+ls.URL+`/list.txt}
`)
	d := start(t, "-config", cfg)
	mfs := scrape(t, d.httpAddr)

	var exprs []namedExpr
	exprs = append(exprs, loadDashboard(t).exprs()...)
	for _, r := range loadRules(t) {
		exprs = append(exprs, namedExpr{"alert " + r.name, r.expr})
	}
	checked := 0
	for _, e := range exprs {
		for _, sel := range promSelectorRE.FindAllStringSubmatch(e.expr, -1) {
			name := familyName(mfs, sel[1])
			var labels []string
			for _, m := range promMatcherRE.FindAllStringSubmatch(sel[2], -1) {
				if m[1] == "job" || m[1] == "instance" {
					continue // Prometheus adds these
				}
				if m[2] != "=" {
					t.Errorf("%s: %s: only = matchers are checked here, got %s", e.name, sel[0], m[0])
					continue
				}
				labels = append(labels, m[1]+"="+m[3])
			}
			if strings.HasPrefix(name, "dnsfence_egress_") {
				// Egress metrics exist only with egress.enabled (it needs root and nftables);
				// TestEgressTopology checks them on a server that enforces.
				continue
			}
			checked++
			if value(mfs, name, labels...) < 0 {
				t.Errorf("%s reads %s%v, which a fresh server does not export", e.name, name, labels)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d selectors found in the dashboard and rules", checked)
	}
}
