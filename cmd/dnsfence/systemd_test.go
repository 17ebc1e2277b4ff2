package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdUnit: the shipped unit has the hardening the README promises, its ExecStart is a
// command line this binary accepts, and systemd-analyze verify accepts the unit (where installed).
func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile("../../configs/systemd/dnsfence.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	for _, want := range []string{
		"DynamicUser=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter=@system-service", "MemoryMax=", "ExecReload=/bin/kill -HUP $MAINPID",
	} {
		if !strings.Contains(unit, "\n"+want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	exec1 := regexp.MustCompile(`(?m)^ExecStart=(\S+) (.*)$`).FindStringSubmatch(unit)
	if exec1 == nil {
		t.Fatal("no ExecStart")
	}
	// The same flags, with the shipped config in place of /etc/dnsfence/dnsfence.yaml.
	args := strings.Fields(strings.ReplaceAll(exec1[2], "/etc/dnsfence/dnsfence.yaml", "../../configs/dnsfence.yaml"))
	if out, err := exec.Command(binary(t), append(args, "-config.check")...).CombinedOutput(); err != nil {
		t.Errorf("ExecStart flags rejected: %v\n%s", err, out)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		// Optional even under CI: the hardening directives were checked above.
		skipListed(t, "systemd-analyze not installed (Debian: apt-get install systemd); unit not verified")
	}
	local := filepath.Join(t.TempDir(), "dnsfence.service")
	if err := os.WriteFile(local, []byte(strings.Replace(unit, "ExecStart="+exec1[1], "ExecStart="+binary(t), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", local).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
