package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the real dnsfence once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dnsfence-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "dnsfence")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missingTool(t, name, toolPackages[name])
	}
	return p
}

type proc struct {
	cmd      *exec.Cmd
	dnsAddr  string
	listen   []string // every listen address as logged (tls://…, https://…/path for DoT/DoH)
	httpAddr string
	logs     *syncBuffer
	done     chan error
}

// startBinary runs the built binary with JSON logs and waits for its start line, which names the
// addresses it bound.
func startBinary(t *testing.T, args ...string) *proc {
	t.Helper()
	return startBinaryEnv(t, nil, args...)
}

// startBinaryEnv is startBinary with env (KEY=value) added to the environment.
func startBinaryEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startBinaryAt(t, binary(t), env, args...)
}

// startBinaryAt is startBinaryEnv for the dnsfence binary at path.
func startBinaryAt(t *testing.T, path string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(path, append(args, "-log.format", "json")...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: &syncBuffer{}, done: make(chan error, 1)}
	started := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = p.logs.Write(append(append([]byte{}, line...), '\n'))
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == "dnsfence started" {
				started <- rec
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("dnsfence log:\n%s", p.logs)
		}
	})
	select {
	case rec := <-started:
		for _, a := range rec["listen"].([]any) {
			p.listen = append(p.listen, a.(string))
		}
		p.dnsAddr = p.listen[0]
		p.httpAddr, _ = rec["http"].(string)
	case err := <-p.done:
		p.done <- err
		t.Fatalf("dnsfence exited: %v\n%s", err, p.logs)
	case <-time.After(15 * time.Second):
		t.Fatalf("dnsfence did not start\n%s", p.logs)
	}
	return p
}

// waitLog waits for a log line containing s.
func (p *proc) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dig runs dig against addr with args and returns its output.
func dig(t *testing.T, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all := append([]string{"@" + host, "-p", port, "+tries=1", "+time=3"}, args...)
	out, err := exec.CommandContext(ctx, needTool(t, "dig"), all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", all, err, out)
	}
	return string(out)
}

func TestBinaryWithDig(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	list := writeFile(t, dir, "local.txt", "first.example\n")
	p := startBinary(t, "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0", "-upstream", up.Addr, "-blocklist", list)

	out := dig(t, p.dnsAddr, "www.alipay.com", "A")
	for _, want := range []string{"status: NXDOMAIN", "EDE: 15 (Blocked)", "blocked by list alipay (app alipay)", "alipay.com.\t\t60\tIN\tSOA"} {
		if !strings.Contains(out, want) {
			t.Errorf("blocked dig lacks %q:\n%s", want, out)
		}
	}
	out = dig(t, p.dnsAddr, "+tcp", "forwarded.example", "A")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "192.0.2.53") {
		t.Errorf("forwarded dig over TCP:\n%s", out)
	}

	// Garbage must not take the server down.
	c, err := net.Dial("udp", p.dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		b := make([]byte, 1+i*7%500)
		_, _ = rand.Read(b)
		_, _ = c.Write(b)
	}
	c.Close()

	// SIGHUP reloads the lists.
	if out := dig(t, p.dnsAddr, "second.example"); !strings.Contains(out, "status: NOERROR") {
		t.Fatalf("second.example blocked before reload:\n%s", out)
	}
	writeFile(t, dir, "local.txt.tmp", "second.example\n")
	if err := os.Rename(filepath.Join(dir, "local.txt.tmp"), list); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "blocklists reloaded")
	if out := dig(t, p.dnsAddr, "second.example"); !strings.Contains(out, "status: NXDOMAIN") {
		t.Errorf("second.example not blocked after SIGHUP:\n%s", out)
	}
	// The reload was built by a child process (the binary re-executed), the built-in app lists
	// included, and says so in its log line and its metric.
	if !strings.Contains(p.logs.String(), `"built_in":"child"`) || strings.Contains(p.logs.String(), "did not build it") {
		t.Errorf("the reload was not built in a child process:\n%s", p.logs)
	}
	mfs := scrape(t, p.httpAddr)
	if child, process := value(mfs, "dnsfence_blocklist_reload_builds_total", "where=child"),
		value(mfs, "dnsfence_blocklist_reload_builds_total", "where=process"); child != 1 || process != 0 {
		t.Errorf("reload_builds_total after one reload: child %v, process %v; want 1 and 0", child, process)
	}

	// SIGTERM: a clean exit.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

func runBinary(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestBinaryCommands(t *testing.T) {
	bad := writeFile(t, t.TempDir(), "bad.yaml", "listen: [127.0.0.1:53]\nblocking:\n  mode: zeroip\n")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"help", []string{"-h"}, 0, nil, []string{"Usage:", "-listen", "-upstream", "-blocklist", "-http", "-config", "SIGHUP"}},
		{"version", []string{"version"}, 0, []string{"dnsfence "}, nil},
		{"check", []string{"check", "api.alipay.com", "example.com"}, 0,
			[]string{`api.alipay.com: blocked by list "alipay" (app alipay), rule "alipay.com"`, "blocklists/apps/alipay.txt:", "example.com: not blocked"}, nil},
		{"config.check ok", []string{"-config.check"}, 0, []string{"built-in config: OK"}, nil},
		{"config.check bad", []string{"-config", bad, "-config.check"}, 1, nil, []string{"line 3: blocking.mode", "zeroip"}},
		{"bad flag", []string{"-nope"}, 2, nil, []string{"flag provided but not defined"}},
		{"missing list", []string{"-blocklist", "/nonexistent/list.txt", "-config.check"}, 1, nil, []string{"/nonexistent/list.txt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runBinary(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestBinaryEncryptedListeners: kdig over DoT and DoH and curl over DoH reach the binary's
// listeners; the DoH answer comes over HTTP/2 and a blocked name is sinkholed there too.
func TestBinaryEncryptedListeners(t *testing.T) {
	kdig, curl := needTool(t, "kdig"), needTool(t, "curl")
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	cert := resolvertest.NewCert(t)
	dir := t.TempDir()
	certFile, keyFile := writeFile(t, dir, "cert.pem", string(cert.CertPEM)), writeFile(t, dir, "key.pem", string(cert.KeyPEM))
	caFile := writeFile(t, dir, "ca.pem", string(cert.CAPEM))
	p := startBinary(t, "-listen", "tls://127.0.0.1:0", "-listen", "https://127.0.0.1:0/dns-query",
		"-tls-cert", certFile, "-tls-key", keyFile, "-http", "127.0.0.1:0", "-upstream", up.Addr)
	if len(p.listen) != 2 || !strings.HasPrefix(p.listen[0], "tls://") || !strings.HasPrefix(p.listen[1], "https://") {
		t.Fatalf("listen %v", p.listen)
	}
	dotHost, dotPort, _ := net.SplitHostPort(strings.TrimPrefix(p.listen[0], "tls://"))
	dohURL := p.listen[1]
	dohHostPort := strings.TrimSuffix(strings.TrimPrefix(dohURL, "https://"), "/dns-query")
	dohHost, dohPort, _ := net.SplitHostPort(dohHostPort)

	run := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	out := run(kdig, "@"+dotHost, "-p", dotPort, "+tls", "+tls-ca="+caFile, "+tls-hostname=127.0.0.1", "forwarded.example", "A")
	if !strings.Contains(out, "192.0.2.53") || !strings.Contains(out, "TLS") {
		t.Errorf("kdig +tls:\n%s", out)
	}
	out = run(kdig, "@"+dohHost, "-p", dohPort, "+https=/dns-query", "+tls-ca="+caFile, "+tls-hostname=127.0.0.1", "api.alipay.com", "A")
	if !strings.Contains(out, "NXDOMAIN") || !strings.Contains(out, "HTTP/2") {
		t.Errorf("kdig +https on a blocked name:\n%s", out)
	}
	q, _ := resolvertest.Query("curl.example", dns.TypeA, false).Pack()
	qFile := writeFile(t, dir, "q.bin", string(q))
	ans := filepath.Join(dir, "a.bin")
	out = run(curl, "-sS", "--cacert", caFile, "-H", "Content-Type: application/dns-message", "--data-binary", "@"+qFile,
		"-o", ans, "-w", "%{http_code} %{http_version}", dohURL)
	if out != "200 2" {
		t.Errorf("curl: %q, want HTTP/2 200", out)
	}
	wire, _ := os.ReadFile(ans)
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.53" {
		t.Errorf("curl answer: %v %v", m, err)
	}
	metricsOut := run(curl, "-sS", "http://"+p.httpAddr+"/metrics")
	for _, tr := range []string{`transport="tls"`, `transport="https"`} {
		if !strings.Contains(metricsOut, tr) {
			t.Errorf("metrics lack %s", tr)
		}
	}
}

// TestBinaryHeapFloor: the real binary raises GOGC while its heap is far below
// limits.heap_floor_mb (the Go runtime's own metrics say so), and leaves it alone when the
// environment sets GOGC.
func TestBinaryHeapFloor(t *testing.T) {
	p := startBinaryEnv(t, []string{"GOGC=", "GOMEMLIMIT="}, "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0")
	if got := value(scrape(t, p.httpAddr), "go_gc_gogc_percent"); got <= 150 {
		t.Errorf("go_gc_gogc_percent %v with the default 10 MiB heap floor and a small heap, want well above 100", got)
	}
	p = startBinaryEnv(t, []string{"GOGC=150", "GOMEMLIMIT="}, "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0")
	if got := value(scrape(t, p.httpAddr), "go_gc_gogc_percent"); got != 150 {
		t.Errorf("go_gc_gogc_percent %v with GOGC=150 in the environment", got)
	}
}
