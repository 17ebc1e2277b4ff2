package main

import (
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dnsfence/dnsfence/cmd/dnsfence/admin"
	"github.com/dnsfence/dnsfence/resolver/egress"
)

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
	up := &admin.Liveness{Now: time.Now}
	var egressErr error
	h := admin.Ready(func() bool { return true }, up, func() error { return egressErr })
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 200 {
		t.Fatalf("healthy: %d %s", code, body)
	}
	egressErr = (*egress.Runtime)(nil).Ready() // egress off: never degraded
	if code, _ := get(); code != 200 || egressErr != nil {
		t.Fatalf("egress off: %d, %v", code, egressErr)
	}
	egressErr = errors.New("egress degraded: the last nftables update failed: boom")
	if code, body := get(); code != 503 || !strings.Contains(body, "egress degraded") {
		t.Errorf("degraded: %d %s", code, body)
	}
}
