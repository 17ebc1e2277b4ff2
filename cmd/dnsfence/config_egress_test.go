package main

import (
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestEgressConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want []string // substrings of the error; none: valid
	}{
		{"egress:\n  enabled: true\n", nil},
		{"listen: [192.168.1.1:53]\negress:\n  enabled: true\n  rules: true\n  lan_interfaces: [br-lan]\n  force_dns: redirect\n  action: reject\n", nil},
		{"egress:\n  enabled: true\n  rules: true\n  lan_interfaces: [br-lan]\n  force_dns: redirect\n", []string{"listens on loopback only"}},
		{"egress:\n  enabled: true\n  colour: red\n", []string{"unknown key colour"}},
		{"egress:\n  enabled: true\n  rules: true\n", []string{"egress.rules", "lan_interfaces or egress.lan_prefixes"}},
		{"egress:\n  enabled: true\n  force_dns: sometimes\n", []string{"line 3: egress.force_dns", "want redirect, drop or off"}},
		{"egress:\n  enabled: true\n  force_dns: drop\n", []string{"egress.force_dns: needs egress.rules"}},
		{"egress:\n  enabled: true\n  action: explode\n", []string{"line 3: egress.action"}},
		{"egress:\n  enabled: true\n  table: my-table\n", []string{"egress.table"}},
		{"egress:\n  enabled: true\n  lan_prefixes: [not-a-net]\n", []string{"egress.lan_prefixes[0]"}},
		{"egress:\n  enabled: true\n  lan_interfaces: [a-very-long-interface-name]\n", []string{"egress.lan_interfaces[0]"}},
		{"egress:\n  enabled: true\n  ip_lists:\n    - name: qq\n      path: /x\n", []string{"duplicate or reserved list name \"qq\""}},
		{"egress:\n  enabled: true\n  ip_lists:\n    - name: x\n", []string{"exactly one of path, url and builtin"}},
		{"egress:\n  enabled: true\n  ip_lists:\n    - name: x\n      builtin: nope\n", []string{"no built-in address list \"nope\""}},
		{"egress:\n  enabled: true\n  learn_min_ttl: 1h\n  learn_max_ttl: 1m\n", []string{"learn_max_ttl"}},
		{"egress:\n  enabled: false\n  action: explode\n", nil}, // an unused section is not checked
	} {
		cfg, err := parseConfig([]byte(tc.yaml), "t.yaml")
		if err == nil {
			err = cfg.Validate()
		}
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%q: %v", tc.yaml, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%q: accepted", tc.yaml)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q lacks %q", tc.yaml, err, w)
			}
		}
	}
}

// TestEgressCapabilityMessage: without CAP_NET_ADMIN, -config.check says which capability is
// missing and how to grant it.
func TestEgressCapabilityMessage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to drop CAP_NET_ADMIN from a privileged process")
	}
	setpriv := needTool(t, "setpriv")
	cfg := writeFile(t, t.TempDir(), "dnsfence.yaml", "egress:\n  enabled: true\n")
	out, err := exec.Command(setpriv, "--bounding-set=-net_admin", binary(t), "-config", cfg, "-config.check").CombinedOutput()
	if err == nil {
		t.Fatalf("-config.check passed without CAP_NET_ADMIN:\n%s", out)
	}
	for _, want := range []string{"CAP_NET_ADMIN missing", "AmbientCapabilities=CAP_NET_ADMIN", "or run as root"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("message lacks %q:\n%s", want, out)
		}
	}
}

// TestSystemdEgressDropIn: the drop-in grants what egress needs, and systemd accepts the unit
// with it (where systemd-analyze is installed).
func TestSystemdEgressDropIn(t *testing.T) {
	data, err := os.ReadFile("../../configs/systemd/egress.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[Service]", "AmbientCapabilities=CAP_NET_ADMIN", "CapabilityBoundingSet=CAP_NET_ADMIN", "RestrictAddressFamilies=AF_NETLINK"} {
		if !strings.Contains(string(data), "\n"+want) {
			t.Errorf("drop-in lacks %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	unit, err := os.ReadFile("../../configs/systemd/dnsfence.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	local := dir + "/dnsfence.service"
	if err := os.WriteFile(local, []byte(strings.Replace(string(unit), "ExecStart=/usr/local/bin/dnsfence", "ExecStart="+binary(t), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir+"/dnsfence.service.d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/dnsfence.service.d/egress.conf", data, 0o644); err != nil {
		t.Fatal(err)
	}
	// verify reads the drop-in beside the unit; it only warns about unknown keys in it.
	if out, err := exec.Command(analyze, "verify", local).CombinedOutput(); err != nil || strings.Contains(string(out), "egress.conf:") {
		t.Errorf("systemd-analyze verify with the drop-in: %v\n%s", err, out)
	}
}

// TestReadyzEgressDegraded: a failed netlink update makes /readyz say egress is degraded.
func TestReadyzEgressDegraded(t *testing.T) {
	up := &upstreamLiveness{now: time.Now}
	var egressErr error
	h := readyHandler(func() bool { return true }, up, func() error { return egressErr })
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 200 {
		t.Fatalf("healthy: %d %s", code, body)
	}
	egressErr = (*egressRuntime)(nil).ready() // egress off: never degraded
	if code, _ := get(); code != 200 || egressErr != nil {
		t.Fatalf("egress off: %d, %v", code, egressErr)
	}
	egressErr = errors.New("egress degraded: the last nftables update failed: boom")
	if code, body := get(); code != 503 || !strings.Contains(body, "egress degraded") {
		t.Errorf("degraded: %d %s", code, body)
	}
}
