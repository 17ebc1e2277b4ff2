package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// TestBindPermissionDeniedNamesCapability runs the binary as an unprivileged user on a port below
// 1024: the error must say how to get the right to bind it, not only "permission denied".
func TestBindPermissionDeniedNamesCapability(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the binary as user nobody")
	}
	dir, err := os.MkdirTemp("", "dnsfence-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "dnsfence")
	data, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-listen", "127.0.0.1:999", "-http", ""},
		{"-listen", "127.0.0.1:0", "-http", "127.0.0.1:999"},
	} {
		cmd := exec.Command(exe, append(args, "-upstream", "127.0.0.1:1")...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("%v: started as nobody on port 999", args)
		}
		for _, want := range []string{"permission denied", "CAP_NET_BIND_SERVICE", "setcap cap_net_bind_service=+ep " + exe, "configs/systemd/dnsfence.service"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%v: the error does not say %q:\n%s", args, want, out)
			}
		}
	}
}

// TestReportUnauthorizedNamesTokenFile: `dnsfence report` against a server with a token says
// which flag passes it.
func TestReportUnauthorizedNamesTokenFile(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "token", "s3cret\n")
	cfg := writeFile(t, dir, "c.yaml", "listen: [127.0.0.1:0]\nhttp:\n  token_file: "+tokenFile+"\n")
	d := start(t, "-config", cfg, "-upstream", up.Addr)
	err := run(t.Context(), []string{"report", "-http", d.httpAddr}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "-token-file FILE") {
		t.Fatalf("report without the token: %v; want the 401 to name -token-file", err)
	}
}

// TestUpstreamHelpListsEveryForm: -upstream's help names every form of the README's Upstreams
// table.
func TestUpstreamHelpListsEveryForm(t *testing.T) {
	_, help, _ := runBinary(t, "-h")
	var forms []string
	for _, row := range tableRows(readmeSection(t, readme(t), "Upstreams")) {
		forms = append(forms, codeSpans(row[0])...)
	}
	if len(forms) < 5 {
		t.Fatalf("README Upstreams table: %v", forms)
	}
	i := strings.Index(help, "-upstream URL")
	if i < 0 {
		t.Fatalf("no -upstream in the help:\n%s", help)
	}
	upstreamHelp := help[i:]
	if j := strings.Index(upstreamHelp[1:], "\n  -"); j >= 0 {
		upstreamHelp = upstreamHelp[:j+1]
	}
	for _, f := range forms {
		if !strings.Contains(upstreamHelp, f) {
			t.Errorf("-upstream help does not list %s:\n%s", f, upstreamHelp)
		}
	}
}
