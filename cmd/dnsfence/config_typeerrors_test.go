package main

import (
	"strings"
	"testing"
)

// TestConfigTypeErrorsReportedWithTheRest: values of the wrong type no longer hide the other
// problems; every problem names its key and line, in line order, without parser tags or Go types.
func TestConfigTypeErrorsReportedWithTheRest(t *testing.T) {
	p := writeFile(t, t.TempDir(), "c.yaml", `listen: [127.0.0.1:1053]
upstreams: [quic://192.0.2.1]
blocking:
  ttl: 60
  mode: zeroip
cache:
  max_entries: lots
  serve_stale: maybe
access: {allow: 10.0.0.0/8}
tls:
  cert: [a, b]
upstream_timeout: soon
`)
	_, err := loadConfig(&options{config: p})
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		p + ": line 2: upstreams[0]: upstream \"quic://192.0.2.1\": unsupported scheme",
		p + ": line 4: blocking.ttl: 60 is not a duration (want e.g. 60s)",
		p + ": line 5: blocking.mode: unknown sinkhole mode \"zeroip\"",
		p + ": line 7: cache.max_entries: lots is not a whole number",
		p + ": line 8: cache.serve_stale: maybe is not true or false",
		p + ": line 9: access.allow: 10.0.0.0/8 is not a list",
		p + ": line 11: tls.cert: a list is not a single value",
		p + ": line 12: upstream_timeout: soon is not a duration (want e.g. 2s, 500ms, 1m)",
	}
	lines := strings.Split(strings.TrimPrefix(err.Error(), "invalid configuration:\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d: %q\nwant it to start with %q", i+1, lines[i], w)
		}
	}
	for _, bad := range []string{"!!", "time.Duration", "unmarshal", "main."} {
		if strings.Contains(err.Error(), bad) {
			t.Errorf("the problems mention %q:\n%v", bad, err)
		}
	}
}
