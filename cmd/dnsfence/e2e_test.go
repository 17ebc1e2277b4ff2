package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

const testList = `# test list
blocked.example
ads.example.net
bad..name
`

func TestEndToEndForwardAndBlock(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	list := writeFile(t, t.TempDir(), "test.txt", testList)
	d := start(t, "-upstream", up.Addr, "-blocklist", list)
	addr := d.dnsAddrs[0]

	t.Run("forwarded answer equals the upstream's", func(t *testing.T) {
		q := resolvertest.Query("www.allowed.example", dns.TypeA, false)
		got := resolvertest.Exchange(t, "udp", addr, q)
		want := resolvertest.Exchange(t, "udp", up.Addr, q)
		if got.Rcode != dns.RcodeSuccess || len(got.Answer) != 1 || got.Answer[0].String() != want.Answer[0].String() {
			t.Fatalf("got %v\nwant %v", got.Answer, want.Answer)
		}
	})
	for _, name := range []string{"blocked.example", "deep.sub.BLOCKED.example", "ads.example.net"} {
		t.Run("blocked "+name, func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				r := resolvertest.Exchange(t, network, addr, resolvertest.Query(name, dns.TypeA, true))
				if r.Rcode != dns.RcodeNameError {
					t.Fatalf("%s: rcode %s, want NXDOMAIN", network, dns.RcodeToString[r.Rcode])
				}
				soa, ok := r.Ns[0].(*dns.SOA)
				if len(r.Ns) != 1 || !ok || soa.Minttl != 60 || soa.Hdr.Ttl != 60 {
					t.Fatalf("%s: authority %v, want a SOA with TTL and MINIMUM 60", network, r.Ns)
				}
				var ede *dns.EDNS0_EDE
				for _, o := range r.IsEdns0().Option {
					ede, _ = o.(*dns.EDNS0_EDE)
				}
				if ede == nil || ede.InfoCode != dns.ExtendedErrorCodeBlocked || !strings.Contains(ede.ExtraText, "test") {
					t.Fatalf("%s: EDE %v, want Blocked naming list test", network, ede)
				}
			}
		})
	}
	for _, name := range []string{"notblocked.example", "blocked.example.org", "example.net"} {
		t.Run("look-alike "+name, func(t *testing.T) {
			r := resolvertest.Exchange(t, "udp", addr, resolvertest.Query(name, dns.TypeA, false))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("%s was not forwarded: %v", name, r)
			}
		})
	}
	t.Run("built-in list is on by default", func(t *testing.T) {
		r := resolvertest.Exchange(t, "udp", addr, resolvertest.Query("mobilegw.alipay.com", dns.TypeA, false))
		if r.Rcode != dns.RcodeNameError {
			t.Fatalf("alipay.com not blocked by the built-in list: %v", r)
		}
	})
}

func TestEndToEndSinkholeModes(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	list := writeFile(t, t.TempDir(), "l.txt", "blocked.example\n")
	for _, tc := range []struct {
		mode, extra string
		check       func(*dns.Msg) bool
	}{
		{"null", "", func(m *dns.Msg) bool {
			return m.Rcode == dns.RcodeSuccess && len(m.Answer) == 1 && m.Answer[0].(*dns.A).A.Equal(net.IPv4zero) && m.Answer[0].Header().Ttl == 7
		}},
		{"refused", "", func(m *dns.Msg) bool { return m.Rcode == dns.RcodeRefused }},
		{"custom", "  ipv4: 192.0.2.99\n", func(m *dns.Msg) bool {
			return m.Rcode == dns.RcodeSuccess && len(m.Answer) == 1 && m.Answer[0].(*dns.A).A.String() == "192.0.2.99"
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nupstreams: ["+up.Addr+"]\nblocklists: [{name: l, path: "+list+"}]\n"+
				"blocking:\n  mode: "+tc.mode+"\n  ttl: 7s\n"+tc.extra)
			d := start(t, "-config", cfg)
			r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("x.blocked.example", dns.TypeA, false))
			if !tc.check(r) {
				t.Fatalf("mode %s: %v", tc.mode, r)
			}
		})
	}
}

func TestEndToEndFailoverAndServfail(t *testing.T) {
	dead := resolvertest.Start(t, resolvertest.Silent())
	good := resolvertest.Start(t, resolvertest.A("192.0.2.54"))
	cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nupstream_timeout: 200ms\nquery_timeout: 1s\nblocklists: []\n")

	d := start(t, "-config", cfg, "-upstream", dead.Addr, "-upstream", good.Addr)
	r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("a.example", dns.TypeA, false))
	if r.Rcode != dns.RcodeSuccess || r.Answer[0].(*dns.A).A.String() != "192.0.2.54" {
		t.Fatalf("no failover: %v", r)
	}
	if dead.Queries() == 0 {
		t.Error("the first upstream was never tried")
	}
	// Two more failures (fail_threshold 3): the dead upstream leaves the rotation.
	for _, n := range []string{"a2.example", "a3.example"} {
		resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(n, dns.TypeA, false))
	}
	tried := dead.Queries()
	resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("a4.example", dns.TypeA, false))
	if dead.Queries() != tried {
		t.Error("an upstream that failed 3 times in a row is still tried")
	}
	if v := value(scrape(t, d.httpAddr), "dnsfence_upstream_healthy", "upstream=udp://"+dead.Addr); v != 0 {
		t.Errorf("dnsfence_upstream_healthy for the dead upstream = %v, want 0", v)
	}
	if !strings.Contains(d.log.String(), "out of rotation") {
		t.Error("leaving the rotation was not logged")
	}

	d2 := start(t, "-config", cfg, "-upstream", dead.Addr)
	began := time.Now()
	r = resolvertest.Exchange(t, "udp", d2.dnsAddrs[0], resolvertest.Query("b.example", dns.TypeA, false))
	if r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("all upstreams dead: rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if el := time.Since(began); el > 1500*time.Millisecond {
		t.Errorf("SERVFAIL took %v, past the 1s query deadline", el)
	}
}

func TestEndToEndMetrics(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	list := writeFile(t, t.TempDir(), "test.txt", testList)
	d := start(t, "-upstream", up.Addr, "-blocklist", list)
	addr := d.dnsAddrs[0]
	upLabel := "upstream=udp://" + up.Addr

	before := scrape(t, d.httpAddr)
	if v := value(before, "dnsfence_blocklist_entries", "list=test"); v != 2 {
		t.Errorf("dnsfence_blocklist_entries{list=test} = %v, want 2", v)
	}
	if v := value(before, "dnsfence_blocklist_invalid_lines", "list=test"); v != 1 {
		t.Errorf("dnsfence_blocklist_invalid_lines{list=test} = %v, want 1", v)
	}
	if v := value(before, "dnsfence_blocked_queries_total", "list=test"); v != 0 {
		t.Errorf("blocked counter for a fresh list = %v, want 0", v)
	}
	for range 3 {
		resolvertest.Exchange(t, "udp", addr, resolvertest.Query("x.blocked.example", dns.TypeA, false))
	}
	for range 2 {
		resolvertest.Exchange(t, "tcp", addr, resolvertest.Query("fine.example", dns.TypeAAAA, false))
	}
	resolvertest.Exchange(t, "udp", addr, resolvertest.Query("fine.example", dns.TypeAXFR, false))

	after := scrape(t, d.httpAddr)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"dnsfence_queries_total", []string{"outcome=blocked", "qtype=A", "rcode=NXDOMAIN"}, 3},
		{"dnsfence_queries_total", []string{"outcome=forwarded", "qtype=AAAA", "rcode=NOERROR"}, 2},
		{"dnsfence_queries_total", []string{"outcome=refused", "qtype=AXFR", "rcode=REFUSED"}, 1},
		{"dnsfence_blocked_queries_total", []string{"list=test"}, 3},
		{"dnsfence_query_duration_seconds", []string{"outcome=blocked"}, 3},
		{"dnsfence_upstream_request_duration_seconds", []string{upLabel}, 2},
	} {
		if got := value(after, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "dnsfence_build_info"} {
		if _, ok := after[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
}

func TestEndToEndReload(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	list := writeFile(t, dir, "test.txt", "old.example\n")
	other := writeFile(t, dir, "other.txt", "other.example\n")
	d := start(t, "-upstream", up.Addr, "-blocklist", list, "-blocklist", other)
	addr := d.dnsAddrs[0]
	rcode := rcoder(t, addr)
	if rcode("old.example") != dns.RcodeNameError || rcode("new.example") != dns.RcodeSuccess {
		t.Fatal("initial list not served")
	}

	writeFile(t, dir, "test.txt", "new.example\n")
	d.triggerReload(t)
	if rcode("old.example") != dns.RcodeSuccess || rcode("new.example") != dns.RcodeNameError {
		t.Fatal("reloaded list not served")
	}

	// A list that turns into garbage keeps its last good entries; the other list still updates.
	writeFile(t, dir, "test.txt", "||not a domain list^\n<html>\n")
	writeFile(t, dir, "other.txt", "other2.example\n")
	d.triggerReload(t)
	if rcode("new.example") != dns.RcodeNameError {
		t.Error("failed reload dropped the last good list")
	}
	if rcode("other2.example") != dns.RcodeNameError || rcode("other.example") != dns.RcodeSuccess {
		t.Error("the healthy list was not updated alongside the failing one")
	}
	mfs := scrape(t, d.httpAddr)
	if v := value(mfs, "dnsfence_blocklist_reloads_total", "list=test", "result=failure"); v != 1 {
		t.Errorf("reload failures for list test = %v, want 1", v)
	}
	if v := value(mfs, "dnsfence_blocklist_entries", "list=test"); v != 1 {
		t.Errorf("entries for list test after failed reload = %v, want 1 (kept)", v)
	}
	if !strings.Contains(d.log.String(), "blocklist reload failed") || !strings.Contains(d.log.String(), "test.txt") {
		t.Errorf("failed reload not logged with the file:\n%s", d.log)
	}

	// A deleted file likewise.
	if err := removeFile(list); err != nil {
		t.Fatal(err)
	}
	d.triggerReload(t)
	if rcode("new.example") != dns.RcodeNameError {
		t.Error("deleting a list file dropped its entries")
	}
}

// TestEndToEndReloadChild: the program's reloads build the lists in the index child (this test
// binary, re-executed); a list that fails there is built in the server, which keeps its last
// good entries. The metric and the log line say where each reload was built.
func TestEndToEndReloadChild(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	list := writeFile(t, dir, "test.txt", "old.example\n")
	other := writeFile(t, dir, "other.txt", "other.example\n")
	d := startWithChild(t, "-upstream", up.Addr, "-blocklist", list, "-blocklist", other)
	rcode := rcoder(t, d.dnsAddrs[0])
	builds := func(where string) float64 {
		return value(scrape(t, d.httpAddr), "dnsfence_blocklist_reload_builds_total", "where="+where)
	}

	writeFile(t, dir, "test.txt", "new.example\n")
	d.triggerReload(t)
	if rcode("old.example") != dns.RcodeSuccess || rcode("new.example") != dns.RcodeNameError {
		t.Fatal("reloaded list not served")
	}
	if builds("child") < 1 || builds("process") != 0 {
		t.Errorf("after a good reload: child %v, process %v builds", builds("child"), builds("process"))
	}
	if !strings.Contains(d.log.String(), `"built_in": "child"`) || !strings.Contains(d.log.String(), "blocklist index child exited") {
		t.Errorf("the reload's log does not say a child built it:\n%s", d.log)
	}

	writeFile(t, dir, "test.txt", "||not a domain list^\n<html>\n")
	writeFile(t, dir, "other.txt", "other2.example\n")
	d.triggerReload(t)
	if rcode("new.example") != dns.RcodeNameError || rcode("other2.example") != dns.RcodeNameError || rcode("other.example") != dns.RcodeSuccess {
		t.Error("a list failing in the child: the last good entries or the other list's update were lost")
	}
	if builds("process") < 1 {
		t.Errorf("a reload with a failing list: %v builds in the server", builds("process"))
	}
	if !strings.Contains(d.log.String(), `"built_in": "server"`) {
		t.Errorf("the failed reload's log does not say it was built in the server:\n%s", d.log)
	}
}

func TestEndToEndHealthzAndQueryLog(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	quiet := start(t, "-upstream", up.Addr)
	resolvertest.Exchange(t, "udp", quiet.dnsAddrs[0], resolvertest.Query("private.example", dns.TypeA, false))
	if strings.Contains(quiet.log.String(), "private.example") {
		t.Errorf("query logged although log.queries is off:\n%s", quiet.log)
	}
	resp, err := http.Get("http://" + quiet.httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %s", resp.Status)
	}

	cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nlog: {format: json, queries: true}\n")
	loud := start(t, "-config", cfg, "-upstream", up.Addr)
	resolvertest.Exchange(t, "udp", loud.dnsAddrs[0], resolvertest.Query("logged.example", dns.TypeA, false))
	resolvertest.Exchange(t, "udp", loud.dnsAddrs[0], resolvertest.Query("x.alipay.com", dns.TypeA, false))
	logs := loud.log.String()
	for _, want := range []string{`"qname":"logged.example."`, `"outcome":"forwarded"`, `"outcome":"blocked"`, `"list":"alipay"`, `"app":"alipay"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("query log lacks %s:\n%s", want, logs)
		}
	}
}

// TestEndToEndDrain: a query in flight when shutdown starts is still answered.
func TestEndToEndDrain(t *testing.T) {
	slow := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		time.Sleep(400 * time.Millisecond)
		resolvertest.A("192.0.2.55").ServeDNS(w, r)
	}))
	r := &running{log: &syncBuffer{}, reload: make(chan chan struct{})}
	ready := make(chan *instance, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runWith(ctx, []string{"-listen", "127.0.0.1:0", "-http", "", "-upstream", slow.Addr}, io.Discard, r.log,
			hooks{ready: func(i *instance) { ready <- i }})
	}()
	inst := <-ready
	answer := make(chan *dns.Msg, 1)
	go func() {
		c := &dns.Client{Timeout: 3 * time.Second}
		m, _, _ := c.Exchange(resolvertest.Query("slow.example", dns.TypeA, false), inst.dnsAddrs[0])
		answer <- m
	}()
	for slow.Queries() == 0 { // the query is now in flight
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if m := <-answer; m == nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("in-flight query not answered during shutdown: %v", m)
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestEndToEndAnswerInspection: an upstream that hides a blocked name behind a CNAME, or answers
// with an address in blocked_nets, gets the whole answer sinkholed.
func TestEndToEndAnswerInspection(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.Reply(func(q dns.Question) []dns.RR {
		var rrs []string
		switch q.Name {
		case "tracker.example.net.":
			rrs = []string{"tracker.example.net. 60 IN CNAME mobilegw.alipay.com.", "mobilegw.alipay.com. 60 IN A 192.0.2.8"}
		case "ok.example.net.":
			rrs = []string{"ok.example.net. 60 IN CNAME cdn.example.org.", "cdn.example.org. 60 IN A 192.0.2.9"}
		case "vendor-ip.example.net.":
			rrs = []string{"vendor-ip.example.net. 60 IN A 203.0.113.77"}
		}
		var out []dns.RR
		for _, s := range rrs {
			rr, _ := dns.NewRR(s)
			out = append(out, rr)
		}
		return out
	}))
	cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nlog: {format: json, queries: true}\nblocking:\n  blocked_nets: [203.0.113.0/24]\n")
	d := start(t, "-config", cfg, "-upstream", up.Addr)
	for name, want := range map[string]int{
		"tracker.example.net":   dns.RcodeNameError,
		"ok.example.net":        dns.RcodeSuccess,
		"vendor-ip.example.net": dns.RcodeNameError,
	} {
		r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, dns.TypeA, true))
		if r.Rcode != want {
			t.Errorf("%s: rcode %s, want %s", name, dns.RcodeToString[r.Rcode], dns.RcodeToString[want])
		}
		if want == dns.RcodeNameError && len(r.Answer) != 0 {
			t.Errorf("%s: blocked answer leaked %v", name, r.Answer)
		}
	}
	logs := d.log.String()
	for _, want := range []string{`"record":"tracker.example.net.\t60\tIN\tCNAME\tmobilegw.alipay.com."`, `"list":"blocked-nets"`, `"rule":"203.0.113.0/24"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	if v := value(scrape(t, d.httpAddr), "dnsfence_blocked_queries_total", "list=alipay", "app=alipay"); v != 1 {
		t.Errorf("cloaked query counted %v times for alipay, want 1", v)
	}
}

// TestEndToEndAccess: clients outside access.allow are refused (and counted), or get no answer
// with action drop; an allowed client is served.
func TestEndToEndAccess(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	for _, action := range []string{"refuse", "drop"} {
		t.Run(action, func(t *testing.T) {
			cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\naccess:\n  allow: [10.0.0.0/8, 127.0.0.2]\n  action: "+action+"\n")
			d := start(t, "-config", cfg, "-upstream", up.Addr)
			before := up.Queries()
			c := &dns.Client{Timeout: 500 * time.Millisecond}
			r, _, err := c.Exchange(resolvertest.Query("x.example", dns.TypeA, false), d.dnsAddrs[0])
			switch action {
			case "refuse":
				if err != nil || r.Rcode != dns.RcodeRefused {
					t.Fatalf("outside client: %v %v, want REFUSED", r, err)
				}
			case "drop":
				if err == nil {
					t.Fatalf("outside client got an answer with action drop: %v", r)
				}
			}
			if up.Queries() != before {
				t.Error("a refused query reached the upstream")
			}
			if v := value(scrape(t, d.httpAddr), "dnsfence_queries_total", "outcome=refused", "rcode=REFUSED"); v != 1 {
				t.Errorf("refused queries counted %v, want 1", v)
			}
			if r := exchangeFrom(t, "127.0.0.2", d.dnsAddrs[0], "x.example"); r.Rcode != dns.RcodeSuccess {
				t.Errorf("allowed client: %v", r)
			}
		})
	}
}

// TestEndToEndRateLimit: a UDP client over its budget gets silence and every slip-th time a
// truncated reply, and TCP still works for it.
func TestEndToEndRateLimit(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nrate_limit: {client_qps: 0.001, client_burst: 3, slip: 2}\n")
	d := start(t, "-config", cfg, "-upstream", up.Addr)
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	answered, truncated, silent := 0, 0, 0
	for range 7 {
		r, _, err := c.Exchange(resolvertest.Query("rl.example", dns.TypeA, false), d.dnsAddrs[0])
		switch {
		case err != nil:
			silent++
		case r.Truncated:
			truncated++
		default:
			answered++
		}
	}
	if answered != 3 || truncated != 2 || silent != 2 {
		t.Errorf("answered %d, truncated %d, silent %d; want 3, 2, 2", answered, truncated, silent)
	}
	if r := resolvertest.Exchange(t, "tcp", d.dnsAddrs[0], resolvertest.Query("rl.example", dns.TypeA, false)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("TCP retry of a limited client: %v", r)
	}
	if v := value(scrape(t, d.httpAddr), "dnsfence_queries_total", "outcome=ratelimited"); v != 4 {
		t.Errorf("ratelimited queries counted %v, want 4", v)
	}
}

// TestEndToEndOversizedUpstreamReply: an upstream that ignores the buffer size and sends a 2.5 KB
// UDP answer is still relayed: truncated for a client without EDNS, whole over TCP.
func TestEndToEndOversizedUpstreamReply(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.Reply(func(q dns.Question) []dns.RR {
		var rrs []dns.RR
		for i := range 150 {
			rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(10, 1, byte(i/256), byte(i))})
		}
		return rrs
	}))
	d := start(t, "-upstream", up.Addr)
	r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("big.example", dns.TypeA, false))
	r.Compress = true
	if wire, _ := r.Pack(); !r.Truncated || len(wire) > 512 {
		t.Errorf("UDP without EDNS: TC=%v size %d", r.Truncated, len(wire))
	}
	if r := resolvertest.Exchange(t, "tcp", d.dnsAddrs[0], resolvertest.Query("big.example", dns.TypeA, false)); len(r.Answer) != 150 {
		t.Errorf("TCP: %d answers, want 150", len(r.Answer))
	}
}

// TestEndToEndEncryptedUpstreams: dnsfence forwards over DoT and DoH to loopback servers whose
// CA is given by upstream_tls_ca, one of them found by name through a bootstrap server.
func TestEndToEndEncryptedUpstreams(t *testing.T) {
	cert := resolvertest.NewCert(t, "dot.test")
	dot := resolvertest.StartDoT(t, resolvertest.A("192.0.2.61"), cert)
	doh := resolvertest.StartDoH(t, resolvertest.A("192.0.2.62"), cert)
	boot := resolvertest.Start(t, resolvertest.A("127.0.0.1"))
	dir := t.TempDir()
	caPEM := writeFile(t, dir, "ca.pem", string(cert.CAPEM))
	_, dotPort, _ := strings.Cut(dot.Addr, ":")
	for _, tc := range []struct{ upstream, want string }{
		{"tls://dot.test:" + dotPort, "192.0.2.61"},
		{doh.URL, "192.0.2.62"},
	} {
		cfg := writeFile(t, dir, "c.yaml", "listen: [127.0.0.1:0]\nbootstrap: ["+boot.Addr+"]\nupstream_tls_ca: "+caPEM+"\n")
		d := start(t, "-config", cfg, "-upstream", tc.upstream)
		r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("enc.example", dns.TypeA, false))
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != tc.want {
			t.Errorf("%s: %v", tc.upstream, r)
		}
	}
}

// TestEndToEndLocalNames: an internal zone goes only to its own resolver, private reverse
// lookups never reach the public upstream, a trusted zone skips blocking, and with rebinding
// protection a public name on a private address is dropped.
func TestEndToEndLocalNames(t *testing.T) {
	public := resolvertest.Start(t, resolvertest.Reply(func(q dns.Question) []dns.RR {
		ip := "192.0.2.80"
		if strings.HasPrefix(q.Name, "rebind.") {
			ip = "192.168.1.10"
		}
		rr, _ := dns.NewRR(q.Name + " 60 IN A " + ip)
		return []dns.RR{rr}
	}))
	internal := resolvertest.Start(t, resolvertest.Reply(func(q dns.Question) []dns.RR {
		rr, _ := dns.NewRR(q.Name + " 60 IN A 10.0.0.5")
		if q.Qtype == dns.TypePTR {
			rr, _ = dns.NewRR(q.Name + " 60 IN PTR printer.corp.example.")
		}
		return []dns.RR{rr}
	}))
	dir := t.TempDir()
	list := writeFile(t, dir, "l.txt", "tracker.corp.example\ntracker.trusted.example\n")
	base := "listen: [127.0.0.1:0]\nupstreams: [" + public.Addr + "]\nblocklists: [{name: l, path: " + list + "}]\n" +
		"forward_zones:\n  - {zone: corp.example, upstreams: [" + internal.Addr + "]}\n  - {zone: trusted.example, upstreams: [" + internal.Addr + "], trusted: true}\n"
	ask := func(d *running, name string, qtype uint16) *dns.Msg {
		return resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, qtype, false))
	}

	d := start(t, "-config", writeFile(t, dir, "a.yaml", base))
	before := public.Queries()
	if r := ask(d, "fs1.corp.example", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.0.0.5" {
		t.Errorf("internal zone: %v", r)
	}
	if r := ask(d, "10.1.168.192.in-addr.arpa", dns.TypePTR); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Errorf("private PTR without private_zones: %v, want a local NXDOMAIN with SOA", r)
	}
	if r := ask(d, "nas.home.arpa", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("home.arpa: %v", r)
	}
	if public.Queries() != before {
		t.Errorf("the public upstream saw %d internal or private queries", public.Queries()-before)
	}
	if r := ask(d, "tracker.corp.example", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("blocking must apply in an untrusted internal zone: %v", r)
	}
	if r := ask(d, "tracker.trusted.example", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Errorf("a trusted zone was blocked: %v", r)
	}
	if r := ask(d, "rebind.example.org", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Errorf("rebinding protection is opt-in: %v", r)
	}

	d2 := start(t, "-config", writeFile(t, dir, "b.yaml", base+"rebinding_protection: true\nprivate_zones: {upstreams: ["+internal.Addr+"]}\n"))
	if r := ask(d2, "10.1.168.192.in-addr.arpa", dns.TypePTR); len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "printer.corp.example") {
		t.Errorf("private PTR to private_zones: %v", r)
	}
	if r := ask(d2, "rebind.example.org", dns.TypeA); r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
		t.Errorf("rebinding answer not dropped: %v", r)
	}
	if r := ask(d2, "fs1.corp.example", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Errorf("a conditionally forwarded zone may answer private addresses: %v", r)
	}
	if v := value(scrape(t, d2.httpAddr), "dnsfence_blocked_queries_total", "list=rebinding-protection"); v != 1 {
		t.Errorf("rebinding drops counted %v, want 1", v)
	}
	if public.Queries() != before+2 { // rebind.example.org twice; nothing private
		t.Errorf("public upstream saw %d queries, want %d", public.Queries(), before+2)
	}
}

// TestEndToEndCustomRecords: records and hosts files are answered locally and authoritatively,
// CNAMEs are followed (locally, or through blocking and the upstream for outside names).
func TestEndToEndCustomRecords(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.90"))
	dir := t.TempDir()
	hosts := writeFile(t, dir, "hosts", "# local hosts\n192.168.1.20 tv.home.arpa tv\nfd00::20 tv.home.arpa\n")
	cfg := writeFile(t, dir, "c.yaml", `listen: [127.0.0.1:0]
records:
  - "nas.home.arpa. 300 IN A 192.168.1.10"
  - "wiki.home.arpa. 300 IN CNAME nas.home.arpa."
  - "cdn.home.arpa. 300 IN CNAME assets.example.org."
  - "pay.home.arpa. 300 IN CNAME openapi.alipay.com."
  - "home.arpa. 300 IN MX 10 mail.home.arpa."
  - "_http._tcp.home.arpa. 300 IN SRV 0 0 80 nas.home.arpa."
hosts_files: [`+hosts+`]
`)
	d := start(t, "-config", cfg, "-upstream", up.Addr)
	ask := func(name string, qtype uint16) *dns.Msg {
		return resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, qtype, false))
	}
	before := up.Queries()
	if r := ask("NAS.home.arpa", dns.TypeA); !r.Authoritative || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.168.1.10" {
		t.Errorf("A: %v", r)
	}
	if r := ask("nas.home.arpa", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || !r.Authoritative {
		t.Errorf("NODATA: %v", r)
	}
	if r := ask("wiki.home.arpa", dns.TypeA); len(r.Answer) != 2 || r.Answer[1].(*dns.A).A.String() != "192.168.1.10" {
		t.Errorf("local CNAME chain: %v", r)
	}
	for name, qtype := range map[string]uint16{"home.arpa": dns.TypeMX, "_http._tcp.home.arpa": dns.TypeSRV} {
		if r := ask(name, qtype); len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != qtype {
			t.Errorf("%s %s: %v", name, dns.TypeToString[qtype], r)
		}
	}
	if r := ask("tv.home.arpa", dns.TypeAAAA); len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "fd00::20" {
		t.Errorf("hosts AAAA: %v", r)
	}
	if r := ask("20.1.168.192.in-addr.arpa", dns.TypePTR); len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "tv.home.arpa." {
		t.Errorf("hosts PTR: %v", r)
	}
	if up.Queries() != before {
		t.Errorf("local names reached the upstream (%d queries)", up.Queries()-before)
	}
	if r := ask("cdn.home.arpa", dns.TypeA); len(r.Answer) != 2 || r.Answer[1].(*dns.A).A.String() != "192.0.2.90" {
		t.Errorf("CNAME to an outside name: %v", r)
	}
	if r := ask("pay.home.arpa", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("CNAME to a blocked name: %v", r)
	}
}

// TestEndToEndConfigReload: SIGHUP (here the test trigger) re-reads the config: a valid change
// (mode, apps, records, zones) applies at once without a restart; an invalid file is refused with
// its line and the running config stays; a listen change is reported as needing a restart.
func TestEndToEndConfigReload(t *testing.T) {
	public := resolvertest.Start(t, resolvertest.A("192.0.2.70"))
	internal := resolvertest.Start(t, resolvertest.A("10.0.0.70"))
	dir := t.TempDir()
	path := filepath.Join(dir, "dnsfence.yaml")
	write := func(content string) {
		writeFile(t, dir, "next.yaml", content)
		if err := os.Rename(filepath.Join(dir, "next.yaml"), path); err != nil {
			t.Fatal(err)
		}
	}
	base := "listen: [127.0.0.1:0]\nupstreams: [" + public.Addr + "]\n"
	write(base + "apps: [alipay]\n")
	d := start(t, "-config", path)
	ask := func(name string) *dns.Msg {
		return resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, dns.TypeA, false))
	}
	if ask("openapi.alipay.com").Rcode != dns.RcodeNameError || ask("api.intsig.net").Rcode != dns.RcodeSuccess {
		t.Fatal("initial config not applied")
	}

	write(base + "apps: [camscanner]\nblocking: {mode: null}\nrecords: [\"nas.home.arpa. 60 IN A 192.168.1.7\"]\n" +
		"forward_zones: [{zone: corp.example, upstreams: [" + internal.Addr + "]}]\n")
	d.triggerReload(t)
	if r := ask("api.intsig.net"); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "0.0.0.0" {
		t.Errorf("new apps and mode not applied: %v", r)
	}
	if ask("openapi.alipay.com").Rcode != dns.RcodeSuccess {
		t.Error("an app removed from the config is still blocked")
	}
	if r := ask("nas.home.arpa"); len(r.Answer) != 1 {
		t.Errorf("new record not served: %v", r)
	}
	if r := ask("fs.corp.example"); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.0.0.70" {
		t.Errorf("new forward zone not applied: %v", r)
	}

	write(base + "apps: [camscanner]\nblocking:\n  mode: zeroip\n")
	d.triggerReload(t)
	if r := ask("api.intsig.net"); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "0.0.0.0" {
		t.Errorf("an invalid config replaced the running one: %v", r)
	}
	logs := d.log.String()
	if !strings.Contains(logs, "config reload refused") || !strings.Contains(logs, "line 5: blocking.mode") {
		t.Errorf("refused reload not logged with its line:\n%s", logs)
	}
	mfs := scrape(t, d.httpAddr)
	if value(mfs, "dnsfence_config_reloads_total", "result=failure") != 1 || value(mfs, "dnsfence_config_reloads_total", "result=success") != 2 {
		t.Errorf("config reload counters: failure %v success %v", value(mfs, "dnsfence_config_reloads_total", "result=failure"),
			value(mfs, "dnsfence_config_reloads_total", "result=success"))
	}

	write("listen: [127.0.0.1:0, 127.0.0.2:0]\nupstreams: [" + public.Addr + "]\napps: [camscanner]\n")
	d.triggerReload(t)
	if !strings.Contains(d.log.String(), "need a restart") {
		t.Error("a listen change was not reported as needing a restart")
	}
	if ask("api.intsig.net").Rcode != dns.RcodeNameError {
		t.Error("the rest of a config with a listen change was not applied")
	}
}

// TestEndToEndWatchesFiles: list files replaced the ways editors, `mv` and Kubernetes ConfigMaps
// do are picked up without SIGHUP.
func TestEndToEndWatchesFiles(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	// ConfigMap layout: list.txt -> ..data/list.txt, ..data -> ..v1
	cm := filepath.Join(dir, "cm")
	for _, v := range []string{"..v1", "..v2"} {
		if err := os.MkdirAll(filepath.Join(cm, v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(cm, "..v1"), "list.txt", "cm-old.example\n")
	writeFile(t, filepath.Join(cm, "..v2"), "list.txt", "cm-new.example\n")
	must(t, os.Symlink("..v1", filepath.Join(cm, "..data")))
	must(t, os.Symlink(filepath.Join("..data", "list.txt"), filepath.Join(cm, "list.txt")))
	plain := writeFile(t, dir, "plain.txt", "plain-old.example\n")

	d := start(t, "-upstream", up.Addr, "-blocklist", plain, "-blocklist", filepath.Join(cm, "list.txt"))
	blocked := func(name string) bool {
		return resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, dns.TypeA, false)).Rcode == dns.RcodeNameError
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not picked up: %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !blocked("plain-old.example") || !blocked("cm-old.example") {
		t.Fatal("initial lists not served")
	}

	// mv into place
	writeFile(t, dir, "plain.tmp", "plain-new.example\n")
	must(t, os.Rename(filepath.Join(dir, "plain.tmp"), plain))
	eventually("rename over the list", func() bool { return blocked("plain-new.example") && !blocked("plain-old.example") })

	// delete and re-create
	must(t, os.Remove(plain))
	writeFile(t, dir, "plain.txt", "plain-again.example\n")
	eventually("delete and re-create", func() bool { return blocked("plain-again.example") })

	// ConfigMap update: ..data swapped atomically to the new version
	must(t, os.Symlink("..v2", filepath.Join(cm, "..data_tmp")))
	must(t, os.Rename(filepath.Join(cm, "..data_tmp"), filepath.Join(cm, "..data")))
	eventually("ConfigMap ..data swap", func() bool { return blocked("cm-new.example") && !blocked("cm-old.example") })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestEndToEndConfigReloadChild: a config reload that adds a list builds the new lists in the
// index child too (the running ones answer meanwhile), and says so in its log and metric.
func TestEndToEndConfigReloadChild(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	one := writeFile(t, dir, "one.txt", "one.example\n")
	two := writeFile(t, dir, "two.txt", "two.example\n")
	config := func(lists string) string {
		return fmt.Sprintf("listen: [127.0.0.1:0]\nupstreams: [%q]\ndownloads: {cache_dir: %q}\nblocklists: [%s]\n",
			up.Addr, filepath.Join(dir, "cache"), lists)
	}
	cfg := writeFile(t, dir, "dnsfence.yaml", config(fmt.Sprintf("{name: one, path: %q}", one)))
	d := startWithChild(t, "-config", cfg)
	rcode := rcoder(t, d.dnsAddrs[0])
	if rcode("one.example") != dns.RcodeNameError || rcode("two.example") != dns.RcodeSuccess {
		t.Fatal("the first config's list is not served")
	}
	writeFile(t, dir, "dnsfence.yaml", config(fmt.Sprintf("{name: one, path: %q}, {name: two, path: %q}", one, two)))
	d.triggerReload(t)
	if rcode("one.example") != dns.RcodeNameError || rcode("two.example") != dns.RcodeNameError {
		t.Fatal("the reloaded config's lists are not served")
	}
	if !strings.Contains(d.log.String(), "blocklists built for the new config") || !strings.Contains(d.log.String(), `"built_in": "child"`) {
		t.Errorf("the config reload's log does not say a child built its lists:\n%s", d.log)
	}
	if n := value(scrape(t, d.httpAddr), "dnsfence_blocklist_reload_builds_total", "where=child"); n < 1 {
		t.Errorf("dnsfence_blocklist_reload_builds_total{where=child} = %v after the config reload", n)
	}
}
