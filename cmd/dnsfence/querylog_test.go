package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/configs"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// queryOverTCP sends names one after the other on one TCP connection (TCP is not rate-limited
// and reuses its socket, so thousands of queries stay quick).
func queryOverTCP(t *testing.T, addr string, names []string) {
	t.Helper()
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	conn, err := c.Dial(addr)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	for _, n := range names {
		if _, _, err := c.ExchangeWithConn(resolvertest.Query(n, dns.TypeA, false), conn); err != nil {
			t.Errorf("%s: %v", n, err)
			return
		}
	}
}

// readJSONLines parses every line of path as a JSON object.
func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %d is not JSON: %v\n%s", path, len(out)+1, err, sc.Text())
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEndToEndQueryLogFile: with log.query_file the query log is JSON lines in that file, rotated
// by size with at most query_max_backups old files, flushed at shutdown, with truncated clients.
func TestEndToEndQueryLogFile(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	list := writeFile(t, dir, "l.txt", "blocked.example\n")
	logDir := filepath.Join(dir, "log")
	must(t, os.Mkdir(logDir, 0o755))
	logFile := filepath.Join(logDir, "queries.log")
	// A file rotated long ago: the next rotation makes two backups, one too many.
	stale := writeFile(t, logDir, "queries-2020-01-02T03-04-05.000.log", "{}\n")
	cfg := writeFile(t, dir, "c.yaml", fmt.Sprintf(`listen: [127.0.0.1:0]
upstreams: [%s]
apps: none
blocklists: [{name: l, path: %s}]
limits: {max_tcp_queries: 0}
log:
  queries: true
  query_file: %s
  query_max_size_mb: 1
  query_max_backups: 1
  query_client: truncate
`, up.Addr, list, logFile))
	d := start(t, "-config", cfg)

	// About 480 bytes a line: 2400 lines pass 1 MB, so the file rotates once.
	label := strings.Repeat("x", 55)
	const workers, each = 4, 600
	var wg sync.WaitGroup
	for w := range workers {
		names := make([]string, each)
		for i := range names {
			names[i] = fmt.Sprintf("%s.%s.%s.%s.w%d-%d.blocked.example", label, label, label, label, w, i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			queryOverTCP(t, d.dnsAddrs[0], names)
		}()
	}
	wg.Wait()
	resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("last.forwarded.example", dns.TypeAAAA, false))
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(d.log.String(), "last.forwarded.example") {
		t.Error("with query_file, query lines still go to stderr")
	}

	// The removal of old backups runs in the background after a rotation.
	var backups []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		backups, _ = filepath.Glob(filepath.Join(logDir, "queries-*.log"))
		if len(backups) <= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(backups) != 1 || backups[0] == stale {
		t.Fatalf("rotated files %v, want exactly 1, the new one (query_max_backups)", backups)
	}
	for _, p := range append(backups, logFile) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over query_max_size_mb", p, st.Size())
		}
	}

	lines := readJSONLines(t, backups[0])
	current := readJSONLines(t, logFile)
	if len(lines) < 1000 || len(current) == 0 {
		t.Fatalf("%d lines in the backup, %d in the current file", len(lines), len(current))
	}
	blocked := lines[0]
	for _, k := range []string{"time", "client", "qname", "qtype", "transport", "outcome", "rcode", "list", "rule", "duration"} {
		if _, ok := blocked[k]; !ok {
			t.Errorf("blocked query line lacks %q: %v", k, blocked)
		}
	}
	if blocked["client"] != "127.0.0.0" || blocked["outcome"] != "blocked" || blocked["rcode"] != "NXDOMAIN" ||
		blocked["list"] != "l" || blocked["rule"] != "blocked.example" || blocked["qtype"] != "A" || blocked["transport"] != "tcp" {
		t.Errorf("blocked query line: %v", blocked)
	}
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(blocked["time"])); err != nil {
		t.Errorf("time: %v", err)
	}
	if d, ok := blocked["duration"].(float64); !ok || d <= 0 || d > 5 {
		t.Errorf("duration %v, want seconds as a number", blocked["duration"])
	}
	// The last line was still in the buffer when the server stopped.
	last := current[len(current)-1]
	if last["qname"] != "last.forwarded.example." || last["outcome"] != "forwarded" || last["qtype"] != "AAAA" ||
		last["upstream"] != "udp://"+up.Addr || last["client"] != "127.0.0.0" {
		t.Errorf("last line (flushed at shutdown): %v", last)
	}
}

// TestEndToEndQueryLogClient: query_client truncate and omit apply to the query log on stderr too.
func TestEndToEndQueryLogClient(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	for mode, want := range map[string]string{"full": `"client":"127.0.0.2"`, "truncate": `"client":"127.0.0.0"`, "omit": ""} {
		t.Run(mode, func(t *testing.T) {
			cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nlog: {format: json, queries: true, query_client: "+mode+"}\n")
			d := start(t, "-config", cfg, "-upstream", up.Addr)
			exchangeFrom(t, "127.0.0.2", d.dnsAddrs[0], "client.example")
			must(t, d.stop())
			var line string
			for l := range strings.Lines(d.log.String()) {
				if strings.Contains(l, `"qname":"client.example."`) {
					line = l
				}
			}
			switch {
			case line == "":
				t.Fatalf("no query line:\n%s", d.log)
			case want == "" && strings.Contains(line, `"client"`):
				t.Errorf("client not omitted: %s", line)
			case want != "" && !strings.Contains(line, want):
				t.Errorf("want %s in %s", want, line)
			}
		})
	}
}

func TestQueryLogConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ yaml, want string }{
		{"log:\n  queries: true\n  query_max_size_mb: 0\n", "line 3: log.query_max_size_mb: must be at least 1"},
		{"log:\n  query_max_backups: -1\n", "line 2: log.query_max_backups"},
		{"log:\n  query_max_age_days: -2\n", "line 2: log.query_max_age_days"},
		{"log:\n  query_client: hash\n", `line 2: log.query_client: "hash": want full, truncate or omit`},
		{"log:\n  query_file: " + dir + "\n", "line 2: log.query_file: " + dir + " is a directory"},
	} {
		cfg, err := configs.Parse([]byte(tc.yaml), "c.yaml")
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// An unwritable file fails the start, not the first query.
	cfg := writeFile(t, dir, "c.yaml", "listen: [127.0.0.1:0]\nlog: {queries: true, query_file: "+filepath.Join(dir, "missing", "dir", "q.log")+"}\n")
	err := run(t.Context(), []string{"-config", cfg, "-upstream", "127.0.0.1:9", "-http", ""}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "log.query_file") {
		t.Errorf("unwritable query file: %v", err)
	}
}
