package main

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// appHosts are real hostnames of each app's backend, as seen in the sources the lists cite.
var appHosts = map[string][]string{
	"qq":         {"qun.qq.com", "web.qun.qq.com", "h5.vip.qq.com", "msfwifi.3g.qq.com", "multimedia.nt.qq.com.cn", "grouptalk.c2c.qq.com"},
	"qq-wallet":  {"qpay.qq.com", "api.qpay.qq.com", "i.qianbao.qq.com", "myun.tenpay.com"},
	"wechat-pay": {"api.mch.weixin.qq.com", "api2.mch.weixin.qq.com", "apihk.mch.weixin.qq.com", "pay.weixin.qq.com", "payapp.weixin.qq.com"},
	"alipay":     {"openapi.alipay.com", "mobilegw.alipay.com", "mdap.alipaylog.com", "qr.alipay.com", "openapi-sandbox.dl.alipaydev.com"},
	"camscanner": {"api.intsig.net", "api-cs.intsig.net", "ai-tools.camscanner.com", "www.camscanner.com"},
	"shareit":    {"vs.wshareit.com", "relay.ushareit.com", "api-v2.shareitgames.com", "zj-s.usicdn.com"},
	"vmate":      {"vmate.com", "campaign.vmate.com"},
	"wps-office": {"account.wps.cn", "vipapi.wps.cn", "www.wps.com", "wdl1.pcfg.cache.wpscdn.com", "abroad-ad.kingsoft-office-service.com"},
}

// notBlocked are look-alikes and the shared services the per-app lists must leave alone.
var notBlocked = []string{
	"notalipay.com", "alipay.com.example.net", "myalipay.com", "wps.com.cn.example.org",
	"qq.com", "www.qq.com", "mail.qq.com", "weixin.qq.com", "wx.qq.com", "wechat.com", "3g.qq.com",
	"qpic.cn", "mmbiz.qpic.cn", "dldir1.qq.com", "alicdn.com", "g.alicdn.com", "taobao.com",
	"kingsoft.com", "ucweb.com", "example.com", "google.com", "github.com",
}

// TestAppsBlockedEndToEnd queries a running dnsfence on the built-in config: every app's real
// hosts are sinkholed, with the app named in the EDE text and the metrics; the rest is forwarded.
func TestAppsBlockedEndToEnd(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	d := start(t, "-upstream", up.Addr)
	addr := d.dnsAddrs[0]
	total := 0
	for app, hosts := range appHosts {
		for _, h := range hosts {
			r := resolvertest.Exchange(t, "udp", addr, resolvertest.Query(h, dns.TypeA, true))
			if r.Rcode != dns.RcodeNameError {
				t.Errorf("%s (%s): rcode %s, want NXDOMAIN", h, app, dns.RcodeToString[r.Rcode])
				continue
			}
			total++
			if ede := ednsError(r); !strings.Contains(ede, "(app "+app+")") {
				t.Errorf("%s: EDE %q does not name app %s", h, ede, app)
			}
		}
	}
	for _, h := range notBlocked {
		if r := resolvertest.Exchange(t, "udp", addr, resolvertest.Query(h, dns.TypeA, false)); r.Rcode != dns.RcodeSuccess {
			t.Errorf("%s: rcode %s, want it forwarded", h, dns.RcodeToString[r.Rcode])
		}
	}
	mfs := scrape(t, d.httpAddr)
	if got := value(mfs, "dnsfence_blocked_queries_total"); got != float64(total) {
		t.Errorf("blocked counter sum %v, want %d", got, total)
	}
	if got := value(mfs, "dnsfence_blocked_queries_total", "list=alipay", "app=alipay"); got != float64(len(appHosts["alipay"])) {
		t.Errorf("blocked{list=alipay,app=alipay} = %v", got)
	}
	for app := range appHosts {
		if v := value(mfs, "dnsfence_blocklist_invalid_lines", "list="+app); v != 0 {
			t.Errorf("list %s has %v invalid lines", app, v)
		}
	}
}

func ednsError(m *dns.Msg) string {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.ExtraText
			}
		}
	}
	return ""
}

// TestAppSelection: only the selected apps are blocked, and a user list filed under an app counts
// for that app.
func TestAppSelection(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	extra := writeFile(t, dir, "extra.txt", "alipay-partner.example\n")
	cfg := writeFile(t, dir, "c.yaml", "listen: [127.0.0.1:0]\napps: [alipay]\nblocklists:\n  - {name: extra, path: "+extra+", app: alipay}\n")
	d := start(t, "-config", cfg, "-upstream", up.Addr)
	addr := d.dnsAddrs[0]
	for name, want := range map[string]int{
		"openapi.alipay.com":     dns.RcodeNameError,
		"alipay-partner.example": dns.RcodeNameError,
		"api.mch.weixin.qq.com":  dns.RcodeSuccess,
		"api.intsig.net":         dns.RcodeSuccess,
	} {
		if r := resolvertest.Exchange(t, "udp", addr, resolvertest.Query(name, dns.TypeA, false)); r.Rcode != want {
			t.Errorf("%s: rcode %s, want %s", name, dns.RcodeToString[r.Rcode], dns.RcodeToString[want])
		}
	}
	if v := value(scrape(t, d.httpAddr), "dnsfence_blocked_queries_total", "list=extra", "app=alipay"); v != 1 {
		t.Errorf("blocked{list=extra,app=alipay} = %v, want 1", v)
	}
}

func TestAppsCommand(t *testing.T) {
	var out strings.Builder
	if err := runApps(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"EO 14034", "qq-wallet", "QQ Wallet", "Ant Group", "wps-office", "v2fly/domain-list-community"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("apps output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestDoHBypassList: the opt-in doh-bypass list answers NXDOMAIN (what Firefox's canary check needs)
// even when the global mode is null, while other lists keep the global mode.
func TestDoHBypassList(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nblocking: {mode: null}\nblocklists:\n  - {name: doh-bypass, builtin: doh-bypass}\n")
	d := start(t, "-config", cfg, "-upstream", up.Addr)
	for _, name := range []string{"use-application-dns.net", "dns.google", "mozilla.cloudflare-dns.com", "doh.pub", "mask.icloud.com"} {
		if r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, dns.TypeA, false)); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: rcode %s, want NXDOMAIN", name, dns.RcodeToString[r.Rcode])
		}
	}
	r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query("openapi.alipay.com", dns.TypeA, false))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "0.0.0.0" {
		t.Errorf("app list lost the global null mode: %v", r)
	}
	for _, name := range []string{"google.com", "www.cloudflare.com", "icloud.com"} {
		if r := resolvertest.Exchange(t, "udp", d.dnsAddrs[0], resolvertest.Query(name, dns.TypeA, false)); r.Rcode != dns.RcodeSuccess || r.Answer[0].(*dns.A).A.String() != "192.0.2.53" {
			t.Errorf("%s caught by doh-bypass: %v", name, r)
		}
	}
}

// exchangeFrom queries addr from the loopback address src, so groups by client network can be tested.
func exchangeFrom(t *testing.T, src, addr, name string) *dns.Msg {
	t.Helper()
	c := &dns.Client{Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}}
	r, _, err := c.Exchange(resolvertest.Query(name, dns.TypeA, false), addr)
	if err != nil {
		t.Fatalf("from %s: %v", src, err)
	}
	return r
}

func TestClientGroups(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	ads := writeFile(t, dir, "ads.txt", "ads.example\n")
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	cfg := writeFile(t, dir, "c.yaml", `listen: [127.0.0.1:0]
log: {format: json}
blocklists: [{name: ads, path: `+ads+`}]
groups:
  - name: pilot
    clients: [127.0.0.2/32]
    mode: log-only
  - name: finance
    clients: [127.0.0.3]
    exemptions:
      - {app: alipay, until: "`+future+`", reason: quarterly audit}
      - {list: ads, until: "`+past+`", reason: expired already}
  - name: lab
    clients: [127.0.0.4/32]
    apps: [camscanner]
    lists: []
`)
	d := start(t, "-config", cfg, "-upstream", up.Addr)
	addr := d.dnsAddrs[0]
	for _, tc := range []struct {
		src, name string
		rcode     int
	}{
		{"127.0.0.1", "openapi.alipay.com", dns.RcodeNameError}, // default group: everything enforced
		{"127.0.0.1", "ads.example", dns.RcodeNameError},
		{"127.0.0.2", "openapi.alipay.com", dns.RcodeSuccess}, // log-only
		{"127.0.0.3", "openapi.alipay.com", dns.RcodeSuccess}, // exempt until the future
		{"127.0.0.3", "ads.example", dns.RcodeNameError},      // exemption expired
		{"127.0.0.3", "api.intsig.net", dns.RcodeNameError},
		{"127.0.0.4", "api.intsig.net", dns.RcodeNameError}, // lab: only camscanner
		{"127.0.0.4", "openapi.alipay.com", dns.RcodeSuccess},
		{"127.0.0.4", "ads.example", dns.RcodeSuccess},
	} {
		if r := exchangeFrom(t, tc.src, addr, tc.name); r.Rcode != tc.rcode {
			t.Errorf("%s asking %s: rcode %s, want %s", tc.src, tc.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
		}
	}
	mfs := scrape(t, d.httpAddr)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"dnsfence_blocked_queries_total", []string{"list=alipay", "group=default"}, 1},
		{"dnsfence_blocked_queries_total", []string{"list=ads", "group=finance", "app=other"}, 1},
		{"dnsfence_blocked_queries_total", []string{"list=camscanner", "group=lab"}, 1},
		{"dnsfence_policy_allowed_queries_total", []string{"list=alipay", "group=pilot", "reason=log-only"}, 1},
		{"dnsfence_policy_allowed_queries_total", []string{"app=alipay", "group=finance", "reason=exempt"}, 1},
	} {
		if got := value(mfs, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	logs := d.log.String()
	// Without the query log, what policy let through is still logged; nothing else is.
	for _, want := range []string{`"msg":"would have blocked","allowed":"log-only","group":"pilot"`, `"allowed":"exempt"`, `"msg":"exemption active"`, `"reason":"quarterly audit"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	if strings.Contains(logs, `"qname":"api.intsig.net."`) {
		t.Error("a blocked query was logged without the query log")
	}
	if strings.Contains(logs, "expired already") {
		t.Error("an expired exemption was announced as active")
	}
}

// TestReport: the running server's report counts attempts per app and names the top client; the
// report command prints it.
func TestReport(t *testing.T) {
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	d := start(t, "-upstream", up.Addr)
	for range 3 {
		exchangeFrom(t, "127.0.0.7", d.dnsAddrs[0], "openapi.alipay.com")
	}
	exchangeFrom(t, "127.0.0.8", d.dnsAddrs[0], "api.intsig.net")
	exchangeFrom(t, "127.0.0.8", d.dnsAddrs[0], "allowed.example")

	var out, errOut strings.Builder
	if err := runReport([]string{"-http", d.httpAddr, "-json"}, &out, &errOut); err != nil {
		t.Fatalf("report: %v %s", err, errOut.String())
	}
	var sum struct {
		Apps []struct {
			App     string
			Blocked int
		}
		Clients []struct {
			Client  string
			Blocked int
			Apps    map[string]int
		} `json:"top_clients"`
	}
	if err := json.Unmarshal([]byte(out.String()), &sum); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	blocked := map[string]int{}
	for _, a := range sum.Apps {
		blocked[a.App] = a.Blocked
	}
	if blocked["alipay"] != 3 || blocked["camscanner"] != 1 || blocked["qq"] != 0 {
		t.Errorf("per app %v", blocked)
	}
	if len(sum.Clients) != 2 || sum.Clients[0].Client != "127.0.0.7" || sum.Clients[0].Apps["alipay"] != 3 || sum.Clients[1].Blocked != 1 {
		t.Errorf("clients %+v", sum.Clients)
	}
	out.Reset()
	if err := runReport([]string{"-http", d.httpAddr}, &out, &errOut); err != nil || !strings.Contains(out.String(), "127.0.0.7") {
		t.Errorf("text report: %v\n%s", err, out.String())
	}
}
