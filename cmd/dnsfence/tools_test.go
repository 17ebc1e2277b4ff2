package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The end-to-end tests drive the binary with dig, kdig, curl, prometheus and promtool. On a
// machine with only Go they skip, each with a one-line reason that scripts/test.sh lists at the
// end of the run (DNSFENCE_SKIPPED names the file the reasons are appended to); under CI
// (CI=true), where .ci/run installs them, a missing tool fails the test.

// inCI reports whether the tests run under CI, where every tool must be installed.
func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "false" && v != "0"
}

// missingTool fails t under CI, and otherwise records why t is skipped and skips it.
func missingTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s not installed; .ci/run should install it (Debian: apt-get install %s)", tool, pkg)
	}
	skipListed(t, fmt.Sprintf("%s not installed (Debian: apt-get install %s)", tool, pkg))
}

// skipListed skips t and records the reason for the list at the end of the run.
func skipListed(t *testing.T, reason string) {
	t.Helper()
	if p := os.Getenv("DNSFENCE_SKIPPED"); p != "" {
		if f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			_, _ = fmt.Fprintf(f, "%s: %s\n", t.Name(), reason)
			_ = f.Close()
		}
	}
	t.Skip(reason)
}

// toolPackages are the Debian packages of the tools the tests use.
var toolPackages = map[string]string{
	"dig": "dnsutils", "kdig": "knot-dnsutils", "curl": "curl",
	"prometheus": "prometheus", "promtool": "prometheus",
}

// TestMissingToolSkipsOrFails runs a test that needs dig with an empty PATH: outside CI it must
// skip and record its reason for the end of the run; under CI it must fail.
func TestMissingToolSkipsOrFails(t *testing.T) {
	if os.Getenv("DNSFENCE_TOOL_PROBE") == "1" {
		needTool(t, "dig")
		t.Fatal("needTool returned without dig on the PATH")
	}
	skipped := filepath.Join(t.TempDir(), "skipped")
	run := func(ci string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingToolSkipsOrFails$", "-test.v")
		cmd.Env = append(os.Environ(), "DNSFENCE_TOOL_PROBE=1", "PATH="+t.TempDir(), "CI="+ci, "DNSFENCE_SKIPPED="+skipped)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err != nil || !strings.Contains(out, "--- SKIP") {
		t.Fatalf("outside CI, a missing dig should skip: %v\n%s", err, out)
	}
	rec, _ := os.ReadFile(skipped)
	if want := "TestMissingToolSkipsOrFails: dig not installed (Debian: apt-get install dnsutils)\n"; string(rec) != want {
		t.Errorf("recorded %q, want %q", rec, want)
	}
	out, err = run("true")
	if err == nil || !strings.Contains(out, "dig not installed; .ci/run should install it") {
		t.Fatalf("under CI=true, a missing dig should fail the test: %v\n%s", err, out)
	}
}
