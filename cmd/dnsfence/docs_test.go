package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/configs"
	"github.com/dnsfence/dnsfence/metrics"
	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// The docs tests compare what README.md claims with what the binary does, so the two cannot drift:
// the example outputs, the metrics table, the config keys table and the figures quoted twice.

const readmePath = "../../README.md"

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readmeSection returns the text under the heading (any level) up to the next heading of the
// same or a higher level.
func readmeSection(t *testing.T, doc, heading string) string {
	t.Helper()
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		level := len(l) - len(strings.TrimLeft(l, "#"))
		if level == 0 || strings.TrimSpace(l[level:]) != heading {
			continue
		}
		var out []string
		for _, m := range lines[i+1:] {
			if ml := len(m) - len(strings.TrimLeft(m, "#")); ml > 0 && ml <= level && strings.HasPrefix(m[ml:], " ") {
				break
			}
			out = append(out, m)
		}
		return strings.Join(out, "\n")
	}
	t.Fatalf("README has no heading %q", heading)
	return ""
}

// tableRows returns the cells of the Markdown table rows in text whose first cell starts with a
// backtick (header and separator rows have none). Escaped pipes stay in their cell.
func tableRows(text string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "| `") {
			continue
		}
		l = strings.ReplaceAll(strings.Trim(l, "| "), `\|`, "\x00")
		cells := cellSep.Split(l, -1)
		for i := range cells {
			cells[i] = strings.ReplaceAll(strings.TrimSpace(cells[i]), "\x00", "|")
		}
		rows = append(rows, cells)
	}
	return rows
}

var (
	backticked    = regexp.MustCompile("`([^`]*)`")
	cellSep       = regexp.MustCompile(`\s*\|\s*`)
	parenthesised = regexp.MustCompile(`\([^)]*\)`)
)

func codeSpans(s string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestREADMEExampleOutputs runs every `./bin/dnsfence …` command shown in a console block of the
// README and compares its output with the one shown (up to a line starting with "…", which stands
// for the rest), and the -config.check summary quoted in the Configuration section.
func TestREADMEExampleOutputs(t *testing.T) {
	doc := readme(t)
	lines := strings.Split(doc, "\n")
	ran := 0
	for i := 0; i < len(lines); i++ {
		cmdline, ok := strings.CutPrefix(lines[i], "$ ./bin/dnsfence ")
		if !ok {
			continue
		}
		var want []string
		partial := false
		for j := i + 1; j < len(lines) && !strings.HasPrefix(lines[j], "$ ") && lines[j] != "```"; j++ {
			if strings.HasPrefix(lines[j], "…") {
				partial = true
				break
			}
			want = append(want, lines[j])
		}
		for len(want) > 0 && want[len(want)-1] == "" {
			want = want[:len(want)-1]
		}
		args := strings.Fields(strings.SplitN(cmdline, "#", 2)[0])
		out, err := exec.Command(binary(t), args...).Output()
		if err != nil {
			t.Errorf("dnsfence %s: %v", cmdline, err)
			continue
		}
		got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if partial && len(got) > len(want) {
			got = got[:len(want)]
		}
		if !slices.Equal(got, want) {
			t.Errorf("README line %d: dnsfence %s prints\n%s\nbut the README shows\n%s", i+1, cmdline,
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		ran++
	}
	if ran < 2 {
		t.Fatalf("found %d dnsfence example commands in the README; want the check and apps examples", ran)
	}

	summary := regexp.MustCompile("`(built-in config: OK [^`]*)`").FindStringSubmatch(doc)
	if summary == nil {
		t.Fatal("README quotes no `built-in config: OK (…)` summary")
	}
	out, err := exec.Command(binary(t), "-config.check").Output()
	if err != nil {
		t.Fatalf("-config.check: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != summary[1] {
		t.Errorf("dnsfence -config.check prints %q; the README quotes %q", got, summary[1])
	}
}

// TestREADMEMetricsTable compares the Metrics table (names, types, labels and the label values
// it lists) with a real scrape of the binary after forwarded, blocked, log-only and failed
// queries.
func TestREADMEMetricsTable(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dead := resolvertest.Start(t, resolvertest.Rcode(dns.RcodeServerFailure))
	ls := newListServer(t, "remote.example\n")
	dir := t.TempDir()
	local := writeFile(t, dir, "local.txt", "local.example\n/^re[0-9]+\\.example$/\n")
	cfg := writeFile(t, dir, "dnsfence.yaml", `
listen: ["127.0.0.1:0"]
http: {listen: "127.0.0.1:0"}
upstreams: ["`+up.Addr+`"]
forward_zones: [{zone: broken.example, upstreams: ["`+dead.Addr+`"]}]
downloads: {cache_dir: `+dir+`/cache}
blocklists:
  - {name: local, path: `+local+`}
  - {name: remote, url: `+ls.URL+`/list.txt}
groups:
  - {name: lab, clients: [127.0.0.2/32], mode: log-only}
`)
	d := startBinary(t, "-config", cfg)
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"www.example", dns.TypeA}, {"www.example", dns.TypeA}, {"local.example", dns.TypeA}, {"re1.example", dns.TypeAAAA}, {"x.broken.example", dns.TypeA}} {
		resolvertest.Exchange(t, "udp", d.dnsAddr, resolvertest.Query(q.name, q.qtype, true))
	}
	// A log-only client: its blocked name is let through and counted as allowed.
	c := &dns.Client{Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}}}
	if _, _, err := c.Exchange(resolvertest.Query("local.example", dns.TypeA, false), d.dnsAddr); err != nil {
		t.Fatal(err)
	}
	mfs := scrape(t, d.httpAddr)

	doc := readme(t)
	section := readmeSection(t, doc, "Metrics")
	documented := map[string]bool{}
	for _, row := range tableRows(section) {
		if len(row) != 4 || !strings.HasPrefix(row[0], "`dnsfence_") {
			continue
		}
		name := strings.Trim(row[0], "`")
		documented[name] = true
		if strings.HasPrefix(name, "dnsfence_egress_") {
			continue // only with egress.enabled (root, nftables): TestEgressTopology scrapes them
		}
		mf, ok := mfs[name]
		if !ok {
			t.Errorf("README documents %s, which the server does not export", name)
			continue
		}
		if typ := strings.ToLower(mf.GetType().String()); typ != row[1] {
			t.Errorf("%s: README says %s, the server exports a %s", name, row[1], typ)
		}
		want := codeSpans(row[2])
		var got []string
		values := map[string]map[string]bool{}
		if len(mf.Metric) > 0 {
			for _, lp := range mf.Metric[0].Label {
				got = append(got, lp.GetName())
			}
		}
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if values[lp.GetName()] == nil {
					values[lp.GetName()] = map[string]bool{}
				}
				values[lp.GetName()][lp.GetValue()] = true
			}
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: README lists labels %v, the server exports %v", name, want, got)
		}
		// Label values the meaning column enumerates ("`kind`: `block`, …", "`reason` is `timeout`, …").
		for _, label := range []string{"kind", "reason"} {
			if !slices.Contains(want, label) || name == "dnsfence_policy_allowed_queries_total" {
				continue
			}
			var claimed []string
			for _, v := range codeSpans(row[3]) {
				if v != label {
					claimed = append(claimed, v)
				}
			}
			var exported []string
			for v := range values[label] {
				exported = append(exported, v)
			}
			sort.Strings(claimed)
			sort.Strings(exported)
			if !slices.Equal(claimed, exported) {
				t.Errorf("%s: README says %s is one of %v; the server exports %v", name, label, claimed, exported)
			}
		}
	}
	for name := range mfs {
		if strings.HasPrefix(name, "dnsfence_") && !documented[name] {
			t.Errorf("the server exports %s, which the README's Metrics table does not document", name)
		}
	}

	// The label values table.
	for _, row := range tableRows(section) {
		if len(row) != 2 {
			continue
		}
		var want []string
		cell := row[1]
		switch row[0] {
		case "`outcome`":
			for _, o := range resolver.Outcomes() {
				want = append(want, o.String())
			}
			cell = parenthesised.ReplaceAllString(cell, "") // "(clients outside `access.allow`)" explains a value
		case "`app`":
			want = append(configs.AppIDs(), "other")
		default:
			continue
		}
		got := codeSpans(cell)
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("README: %s values %v; the code has %v", row[0], got, want)
		}
	}
	if got, want := codeSpans(rowOf(t, section, "`dnsfence_upstream_errors_total`")[3]), metrics.UpstreamErrorReasons(); !sameSet(got, append(want, "reason")) {
		t.Errorf("README upstream error reasons %v; metrics.UpstreamErrorReasons() %v", got, want)
	}
}

func rowOf(t *testing.T, text, first string) []string {
	t.Helper()
	for _, row := range tableRows(text) {
		if row[0] == first {
			return row
		}
	}
	t.Fatalf("README: no table row %s", first)
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// schemaKeys walks the yaml tags of t: every key, dotted, with [] for a list of mappings, mapped
// to whether it is a leaf (a value rather than a mapping).
func schemaKeys(prefix string, t reflect.Type, out map[string]bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out[key] = true // a list is documented as a whole as well as by its items' keys
			schemaKeys(key+"[].", ft.Elem(), out)
		case ft.Kind() == reflect.Struct:
			out[key] = false
			schemaKeys(key+".", ft, out)
		default:
			out[key] = true
		}
	}
}

// configKeySections are the README sections whose Key | Default | Meaning tables document the
// config keys: the main table, and the sections of features with a config section of their own.
var configKeySections = []string{"Configuration", "Egress enforcement on a router", "History"}

// TestREADMEConfigKeys compares the Configuration table with the schema (the Config struct's
// yaml tags): every documented key exists, and every key is documented, itself or by the key
// that holds it (forward_zones documents {zone, upstreams, trusted} in its row).
func TestREADMEConfigKeys(t *testing.T) {
	schema := map[string]bool{}
	schemaKeys("", reflect.TypeOf(configs.Config{}), schema)
	documented := map[string]bool{}
	var rows [][]string
	for _, section := range configKeySections {
		rows = append(rows, tableRows(readmeSection(t, readme(t), section))...)
	}
	for _, row := range rows {
		if len(row) != 3 {
			continue
		}
		keys := codeSpans(row[0])
		parent := ""
		if i := strings.LastIndex(keys[0], "."); i >= 0 {
			parent = keys[0][:i+1]
		}
		for j, k := range keys {
			if j > 0 && !strings.Contains(k, ".") { // "`rate_limit.client_qps`, `client_burst`"
				k = parent + k
			}
			documented[k] = true
			if _, ok := schema[k]; !ok {
				t.Errorf("README documents config key %s, which the schema does not have", k)
			}
		}
	}
	for k, leaf := range schema {
		if !leaf {
			continue
		}
		covered := false
		for p := k; p != ""; {
			if documented[p] {
				covered = true
				break
			}
			i := strings.LastIndex(p, ".")
			if i < 0 {
				break
			}
			p = strings.TrimSuffix(p[:i], "[]")
		}
		if !covered {
			t.Errorf("config key %s is not in the README's key tables (%s)", k, strings.Join(configKeySections, ", "))
		}
	}
	if len(documented) < 40 {
		t.Fatalf("only %d keys found in the Configuration table", len(documented))
	}
}

// TestREADMECacheEntrySize: the README and the commented default config quote the same figure
// for the size of a cache entry.
func TestREADMECacheEntrySize(t *testing.T) {
	re := regexp.MustCompile(`about (\d+) bytes`)
	yaml, err := os.ReadFile("../../configs/dnsfence.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var inYAML []byte
	for _, l := range bytes.Split(yaml, []byte("\n")) {
		if bytes.Contains(l, []byte("max_entries:")) {
			if m := re.FindSubmatch(l); m != nil {
				inYAML = m[1]
			}
		}
	}
	row := rowOf(t, readmeSection(t, readme(t), "Configuration"), "`cache.max_entries`")
	m := re.FindStringSubmatch(row[2])
	if inYAML == nil || m == nil || m[1] != string(inYAML) {
		t.Fatalf("cache entry size: README %v, configs/dnsfence.yaml %q; want the same \"about N bytes\"", m, inYAML)
	}
}

// TestConsoleQueryLogLine: a console query-log line says what happened ("INFO query blocked"),
// not "INFO query query".
func TestConsoleQueryLogLine(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nupstreams: ["+up.Addr+"]\nlog: {queries: true}\n")
	d := start(t, "-config", cfg)
	resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("alipay.com", dns.TypeA, false))
	resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("www.example", dns.TypeA, false))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(d.log.String(), "\tforwarded\t") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := d.log.String()
	if !strings.Contains(logs, "INFO\tquery\tblocked\t") || !strings.Contains(logs, "INFO\tquery\tforwarded\t") || strings.Contains(logs, "query\tquery") {
		t.Fatalf("console query lines should read \"INFO query blocked …\":\n%s", logs)
	}
}

// TestREADMECommandsInHelp: every subcommand the README's Command line section lists is in
// `dnsfence -h`, so the help a person reads first does not lag behind the README.
func TestREADMECommandsInHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	_ = run(context.Background(), []string{"-h"}, &out, &errOut)
	help := out.String() + errOut.String()
	section := readmeSection(t, readme(t), "Command line")
	n := 0
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "dnsfence ") {
			continue
		}
		usage, _, _ := strings.Cut(line, "  ") // the command and its arguments, before the description
		n++
		if !strings.Contains(help, usage) {
			t.Errorf("README lists %q, which dnsfence -h does not", usage)
		}
	}
	if n < 5 {
		t.Fatalf("only %d commands found in the README's Command line section", n)
	}
}
