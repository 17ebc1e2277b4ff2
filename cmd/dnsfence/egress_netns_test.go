//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/dnsfence/dnsfence/cmd/dnsfence/admin"
)

// The egress topology, all documentation addresses, in namespaces the test creates:
//
//	client ns  cli0 198.51.100.2/24 (the LAN)
//	   |  veth
//	router ns  lan0 198.51.100.1/24, wan0 203.0.113.1/24; forwarding on; dnsfence with egress
//	   |  veth
//	internet ns net0 203.0.113.2/24 (upstream DNS on :53) and on lo the "app backends":
//	    192.0.2.10 listed in the test ip list, 192.0.2.20 only behind the blocked name,
//	    192.0.2.30 behind the blocked name and a name that is not blocked (shared),
//	    192.0.2.40 a plain web server (also a DoT port), 192.0.2.53 a rogue resolver.
//
// Web servers listen on :80 and :853 for every address of the internet ns.
const (
	egListed  = "192.0.2.10"
	egLearned = "192.0.2.20"
	egShared  = "192.0.2.30"
	egPlain   = "192.0.2.40"
	egRogue   = "192.0.2.53"
	egRogueA  = "192.0.2.99" // what the rogue resolver answers
)

var topoSeq int // tests using it do not run in parallel

type topology struct {
	cli, rtr, inet       string // namespace names
	cliFd, rtrFd, inetFd int
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veth pairs and an nftables table")
	}
	needTool(t, "ip")
	topoSeq++
	id := fmt.Sprintf("%d-%d", os.Getpid(), topoSeq)
	tp := &topology{cli: "dnsf-cli-" + id, rtr: "dnsf-rtr-" + id, inet: "dnsf-inet-" + id}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{tp.cli, tp.rtr, tp.inet} {
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	in := func(ns string, args ...string) { t.Helper(); run(append([]string{"ip", "-n", ns}, args...)...) }
	run("ip", "link", "add", "cli0", "netns", tp.cli, "type", "veth", "peer", "name", "lan0", "netns", tp.rtr)
	run("ip", "link", "add", "wan0", "netns", tp.rtr, "type", "veth", "peer", "name", "net0", "netns", tp.inet)
	in(tp.cli, "addr", "add", "198.51.100.2/24", "dev", "cli0")
	in(tp.cli, "link", "set", "cli0", "up")
	in(tp.cli, "route", "add", "default", "via", "198.51.100.1")
	in(tp.rtr, "addr", "add", "198.51.100.1/24", "dev", "lan0")
	in(tp.rtr, "addr", "add", "203.0.113.1/24", "dev", "wan0")
	in(tp.rtr, "link", "set", "lan0", "up")
	in(tp.rtr, "link", "set", "wan0", "up")
	in(tp.rtr, "route", "add", "192.0.2.0/24", "via", "203.0.113.2")
	run("ip", "netns", "exec", tp.rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	in(tp.inet, "addr", "add", "203.0.113.2/24", "dev", "net0")
	in(tp.inet, "link", "set", "net0", "up")
	for _, a := range []string{egListed, egLearned, egShared, egPlain, egRogue} {
		in(tp.inet, "addr", "add", a+"/32", "dev", "lo")
	}
	in(tp.inet, "route", "add", "198.51.100.0/24", "via", "203.0.113.1")
	open := func(ns string) int {
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return int(f.Fd())
	}
	tp.cliFd, tp.rtrFd, tp.inetFd = open(tp.cli), open(tp.rtr), open(tp.inet)
	return tp
}

// inNS runs f on a thread moved into the namespace fd. Sockets f creates stay in that namespace
// whichever thread uses them later. The thread is never unlocked, so it exits with the
// goroutine instead of going back to the scheduler in the wrong namespace.
func inNS(fd int, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// serveInternet starts the upstream, the rogue resolver and the web servers in the internet ns.
func (tp *topology) serveInternet(t *testing.T) {
	t.Helper()
	answers := map[string][]string{
		"bad.example.":    {egLearned, egShared},
		"shared.example.": {egShared},
		"plain.example.":  {egPlain},
	}
	upstream := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if q.Qtype == dns.TypeA {
			for _, a := range answers[strings.ToLower(q.Name)] {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(a)})
			}
		}
		_ = w.WriteMsg(m)
	})
	rogue := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(egRogueA)})
		_ = w.WriteMsg(m)
	})
	var conns []net.PacketConn
	var lns []net.Listener
	err := inNS(tp.inetFd, func() error {
		for _, a := range []string{"203.0.113.2:53", egRogue + ":53"} {
			pc, err := net.ListenPacket("udp4", a)
			if err != nil {
				return err
			}
			conns = append(conns, pc)
		}
		for _, a := range []string{":80", ":853"} {
			ln, err := net.Listen("tcp4", a)
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range []dns.Handler{upstream, rogue} {
		srv := &dns.Server{PacketConn: conns[i], Handler: h}
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	for _, ln := range lns {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, "hello\n")
				c.Close()
			}
		}()
	}
}

// connect dials addr over TCP from the client ns; nil means the connection was made.
func (tp *topology) connect(addr string) error {
	return inNS(tp.cliFd, func() error {
		c, err := net.DialTimeout("tcp4", addr, 700*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// query asks server from the client ns.
func (tp *topology) query(server, name string) (*dns.Msg, error) {
	var resp *dns.Msg
	err := inNS(tp.cliFd, func() error {
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer c.Close()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		co := &dns.Conn{Conn: &udpTo{PacketConn: c, to: server}}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if err := co.WriteMsg(m); err != nil {
			return err
		}
		resp, err = co.ReadMsg()
		return err
	})
	return resp, err
}

// udpTo makes an unconnected UDP socket a net.Conn to one address (replies may come from any).
type udpTo struct {
	net.PacketConn
	to string
}

func (u *udpTo) Read(b []byte) (int, error) { n, _, err := u.ReadFrom(b); return n, err }
func (u *udpTo) Write(b []byte) (int, error) {
	a, err := net.ResolveUDPAddr("udp4", u.to)
	if err != nil {
		return 0, err
	}
	return u.WriteTo(b, a)
}
func (u *udpTo) RemoteAddr() net.Addr { a, _ := net.ResolveUDPAddr("udp4", u.to); return a }

// routerHTTP is an HTTP client whose connections are made in the router ns.
func (tp *topology) routerHTTP() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNS(tp.rtrFd, func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// startInRouter runs the real binary in the router ns and waits for its start line.
func (tp *topology) startInRouter(t *testing.T, cfg string) (httpAddr string, logs *syncBuffer) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", tp.rtr, binary(t), "-config", cfg, "-log.format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs = &syncBuffer{}
	done := make(chan error, 1)
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logs.Write(append(append([]byte{}, line...), '\n'))
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == "dnsfence started" {
				h, _ := rec["http"].(string)
				started <- h
			}
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("dnsfence log:\n%s", logs)
		}
	})
	select {
	case httpAddr = <-started:
	case err := <-done:
		t.Fatalf("dnsfence exited: %v\n%s", err, logs)
	case <-time.After(20 * time.Second):
		t.Fatalf("dnsfence did not start\n%s", logs)
	}
	return httpAddr, logs
}

// within polls cond until it holds or d passes.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestEgressTopology(t *testing.T) {
	tp := newTopology(t)
	tp.serveInternet(t)
	dir := t.TempDir()
	names := writeFile(t, dir, "names.txt", "bad.example\n")
	ips := writeFile(t, dir, "ips.txt", "# test list\n"+egListed+" # listed app backend\n")
	cfg := writeFile(t, dir, "dnsfence.yaml", fmt.Sprintf(`
listen: ["198.51.100.1:53", "127.0.0.1:53"]
upstreams: ["203.0.113.2:53"]
apps: []
blocklists:
  - name: test-names
    path: %s
access:
  allow: [198.51.100.0/24, 127.0.0.0/8]
http:
  listen: 127.0.0.1:0
cache:
  max_entries: 0
egress:
  enabled: true
  lan_interfaces: [lan0]
  ip_lists:
    - name: test-ips
      path: %s
  learn: true
  learn_min_ttl: 3s
  learn_max_ttl: 3s
  rules: true
  action: reject
  force_dns: redirect
  cleanup: true
`, names, ips))
	// Before dnsfence: everything is reachable (the topology works).
	for _, a := range []string{egListed, egLearned, egShared, egPlain} {
		if err := tp.connect(a + ":80"); err != nil {
			t.Fatalf("topology broken, before egress: connect %s: %v", a, err)
		}
	}
	httpAddr, logs := tp.startInRouter(t, cfg)

	t.Run("listed address blocked, others not", func(t *testing.T) {
		if err := tp.connect(egListed + ":80"); err == nil {
			t.Errorf("connect to listed %s succeeded", egListed)
		}
		if err := tp.connect(egPlain + ":80"); err != nil {
			t.Errorf("connect to plain %s failed: %v", egPlain, err)
		}
	})
	t.Run("DoT blocked", func(t *testing.T) {
		if err := tp.connect(egPlain + ":853"); err == nil {
			t.Errorf("DoT connect to %s:853 succeeded", egPlain)
		}
	})
	t.Run("learned address blocked within a second, shared not", func(t *testing.T) {
		if _, err := tp.query("198.51.100.1:53", "shared.example"); err != nil {
			t.Fatal(err)
		}
		if err := tp.connect(egLearned + ":80"); err != nil {
			t.Fatalf("before the blocked query %s is unreachable: %v", egLearned, err)
		}
		resp, err := tp.query("198.51.100.1:53", "bad.example")
		if err != nil || resp.Rcode != dns.RcodeNameError {
			t.Fatalf("bad.example: %v %v, want NXDOMAIN", resp, err)
		}
		if !within(time.Second, func() bool { return tp.connect(egLearned+":80") != nil }) {
			t.Fatalf("learned %s still reachable a second after the blocked query", egLearned)
		}
		if err := tp.connect(egShared + ":80"); err != nil {
			t.Errorf("shared %s blocked: %v", egShared, err)
		}
		// The clamp is 3s: the element times out and the address is reachable again.
		if !within(8*time.Second, func() bool { return tp.connect(egLearned+":80") == nil }) {
			t.Errorf("learned %s still blocked after its 3s timeout", egLearned)
		}
	})
	t.Run("rogue resolver redirected", func(t *testing.T) {
		resp, err := tp.query(egRogue+":53", "plain.example")
		if err != nil {
			t.Fatalf("query via the rogue resolver got no answer: %v", err)
		}
		if got := answerA(resp); got != egPlain {
			t.Errorf("plain.example via the rogue resolver = %q, want dnsfence's upstream answer %s (rogue: %s)", got, egPlain, egRogueA)
		}
		resp, err = tp.query(egRogue+":53", "bad.example")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Rcode != dns.RcodeNameError {
			t.Errorf("bad.example via the rogue resolver: rcode %s, want dnsfence's NXDOMAIN sinkhole", dns.RcodeToString[resp.Rcode])
		}
	})
	t.Run("metrics", func(t *testing.T) {
		body := getBody(t, tp.routerHTTP(), "http://"+httpAddr+"/metrics")
		for _, want := range []string{
			`dnsfence_egress_dropped_packets_total{app="",set="test-ips"}`,
			`dnsfence_egress_dropped_packets_total{app="",set="dot"}`,
			`dnsfence_egress_dropped_packets_total{app="",set="learned"}`,
			`dnsfence_egress_learn_skipped_total 1`,
			`dnsfence_egress_set_elements{set="test-ips"} 1`,
			`dnsfence_egress_up 1`,
		} {
			line := metricLine(body, want)
			if line == "" {
				t.Errorf("no metric %s in /metrics", want)
				continue
			}
			if strings.HasSuffix(line, " 0") {
				t.Errorf("%s did not move: %s", want, line)
			}
		}
		check := getBody(t, tp.routerHTTP(), "http://"+httpAddr+"/api/check?ip="+egListed)
		var res admin.AddrCheck
		if err := json.Unmarshal([]byte(check), &res); err != nil || !res.Blocked || len(res.Sets) != 1 || res.Sets[0].Source != "test-ips" {
			t.Errorf("/api/check?ip=%s = %s (%v)", egListed, check, err)
		}
	})
	t.Run("reload removing an entry unblocks it", func(t *testing.T) {
		tmp := ips + ".new"
		if err := os.WriteFile(tmp, []byte("# emptied\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, ips); err != nil {
			t.Fatal(err)
		}
		if !within(10*time.Second, func() bool { return tp.connect(egListed+":80") == nil }) {
			t.Errorf("%s still blocked after its list was emptied\n%s", egListed, logs)
		}
	})
}

func answerA(m *dns.Msg) string {
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

func getBody(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricLine returns the exposition line starting with series (name and labels), or "".
func metricLine(body, series string) string {
	name, _, _ := strings.Cut(series, " ")
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, name+" ") {
			if series != name && !strings.HasPrefix(l, series) {
				continue
			}
			return l
		}
	}
	return ""
}

// TestEgressTopologyForceDrop: with force_dns: drop and action: drop, DNS to a rogue resolver
// gets no answer at all, DoT and listed addresses time out, and dnsfence itself still answers.
func TestEgressTopologyForceDrop(t *testing.T) {
	tp := newTopology(t)
	tp.serveInternet(t)
	dir := t.TempDir()
	ips := writeFile(t, dir, "ips.txt", egListed+"\n")
	cfg := writeFile(t, dir, "dnsfence.yaml", fmt.Sprintf(`
listen: ["198.51.100.1:53"]
upstreams: ["203.0.113.2:53"]
apps: []
blocklists: []
access:
  allow: [198.51.100.0/24]
http:
  listen: ""
egress:
  enabled: true
  table: fence_test
  lan_prefixes: [198.51.100.0/24]
  ip_lists:
    - name: test-ips
      path: %s
  rules: true
  action: drop
  force_dns: drop
`, ips))
	tp.startInRouter(t, cfg)
	if resp, err := tp.query(egRogue+":53", "plain.example"); err == nil {
		t.Errorf("the rogue resolver answered through force_dns: drop: %v", resp.Answer)
	}
	if resp, err := tp.query("198.51.100.1:53", "plain.example"); err != nil || answerA(resp) != egPlain {
		t.Errorf("dnsfence itself: %v, %v", resp, err)
	}
	for _, a := range []string{egListed + ":80", egPlain + ":853"} {
		err := tp.connect(a)
		if err == nil {
			t.Errorf("connect %s succeeded", a)
		} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Errorf("connect %s: %v, want a timeout (drop, not reject)", a, err)
		}
	}
	if err := tp.connect(egPlain + ":80"); err != nil {
		t.Errorf("connect to the plain web server: %v", err)
	}
	// The commands that do not serve, run in the router ns.
	out, err := exec.Command("ip", "netns", "exec", tp.rtr, binary(t), "-config", cfg, "-config.check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "egress: OK (table inet fence_test") {
		t.Errorf("-config.check: %v\n%s", err, out)
	}
	out, err = exec.Command(binary(t), "egress", "rules", "-config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "table inet fence_test {") || !strings.Contains(string(out), "meta l4proto udp th dport 53 counter name \"dns\" drop") {
		t.Errorf("egress rules: %v\n%s", err, out)
	}
	out, err = exec.Command(binary(t), "check", "-config", cfg, egListed).CombinedOutput()
	if err != nil || !strings.Contains(string(out), egListed+": blocked by egress set test_ips_v4") {
		t.Errorf("check %s: %v\n%s", egListed, err, out)
	}
}

// TestEgressTopologyGroups: a log-only group's client reaches a listed address (counted, not
// blocked); an exemption lets it through until its end, then the address is blocked again
// without a reload.
func TestEgressTopologyGroups(t *testing.T) {
	tp := newTopology(t)
	tp.serveInternet(t)
	dir := t.TempDir()
	names := writeFile(t, dir, "names.txt", "bad.example\n")
	ips := writeFile(t, dir, "ips.txt", egListed+"\n")
	config := func(group string) string {
		return fmt.Sprintf(`
listen: ["198.51.100.1:53"]
upstreams: ["203.0.113.2:53"]
apps: []
blocklists:
  - name: test-names
    path: %s
access:
  allow: [198.51.100.0/24]
http:
  listen: 127.0.0.1:0
groups:
  - name: lab
    clients: [198.51.100.2/32]
%s
egress:
  enabled: true
  lan_interfaces: [lan0]
  ip_lists:
    - name: test-names
      path: %s
  rules: true
  action: reject
`, names, group, ips)
	}
	cfg := writeFile(t, dir, "dnsfence.yaml", config("    mode: log-only"))
	httpAddr, logs := tp.startInRouter(t, cfg)
	if err := tp.connect(egListed + ":80"); err != nil {
		t.Errorf("log-only client blocked: %v", err)
	}
	body := getBody(t, tp.routerHTTP(), "http://"+httpAddr+"/metrics")
	if l := metricLine(body, `dnsfence_egress_dropped_packets_total{app="",set="policy_log_only"}`); l == "" || strings.HasSuffix(l, " 0") {
		t.Errorf("log-only packet not counted: %q", l)
	}
	until := time.Now().Add(4 * time.Second).UTC().Format(time.RFC3339)
	tmp := cfg + ".new"
	if err := os.WriteFile(tmp, []byte(config("    exemptions:\n      - list: test-names\n        reason: test\n        until: "+until)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, cfg); err != nil {
		t.Fatal(err)
	}
	if !within(10*time.Second, func() bool { return strings.Contains(logs.String(), "config reloaded") }) {
		t.Fatal("config not reloaded")
	}
	if err := tp.connect(egListed + ":80"); err != nil {
		t.Errorf("exempt client blocked: %v", err)
	}
	if !within(10*time.Second, func() bool { return tp.connect(egListed+":80") != nil }) {
		t.Errorf("still reachable after the exemption ended at %s", until)
	}
}
