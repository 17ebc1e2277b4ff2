package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/listen"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// suffixMatcher blocks "blocked.example" and its subdomains, as list "test-list".
type suffixMatcher struct{}

func (suffixMatcher) Match(name string) (string, string, bool) {
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	if n == "blocked.example" || strings.HasSuffix(n, ".blocked.example") {
		return "test-list", "blocked.example", true
	}
	return "", "", false
}

// MatchIn treats test-list as list bit 0.
func (m suffixMatcher) MatchIn(name string, lists uint64) (string, string, bool) {
	if lists&1 == 0 {
		return "", "", false
	}
	return m.Match(name)
}

func TestBlockModes(t *testing.T) {
	next := resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		return &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded}, nil
	})
	const ttl = 42
	type want struct {
		rcode  int
		answer string // the answer's address, "" for none
		soa    bool
	}
	for _, tc := range []struct {
		name  string
		sink  resolver.Sinkhole
		qtype uint16
		want  want
	}{
		{"nxdomain A", resolver.Sinkhole{Mode: resolver.SinkholeNXDOMAIN}, dns.TypeA, want{dns.RcodeNameError, "", true}},
		{"nxdomain MX", resolver.Sinkhole{Mode: resolver.SinkholeNXDOMAIN}, dns.TypeMX, want{dns.RcodeNameError, "", true}},
		{"null A", resolver.Sinkhole{Mode: resolver.SinkholeNull}, dns.TypeA, want{dns.RcodeSuccess, "0.0.0.0", false}},
		{"null AAAA", resolver.Sinkhole{Mode: resolver.SinkholeNull}, dns.TypeAAAA, want{dns.RcodeSuccess, "::", false}},
		{"null TXT is NODATA", resolver.Sinkhole{Mode: resolver.SinkholeNull}, dns.TypeTXT, want{dns.RcodeSuccess, "", true}},
		{"refused", resolver.Sinkhole{Mode: resolver.SinkholeRefused}, dns.TypeA, want{dns.RcodeRefused, "", false}},
		{"custom A", resolver.Sinkhole{Mode: resolver.SinkholeCustom, IPv4: netip.MustParseAddr("192.0.2.80"), IPv6: netip.MustParseAddr("2001:db8::80")}, dns.TypeA, want{dns.RcodeSuccess, "192.0.2.80", false}},
		{"custom AAAA", resolver.Sinkhole{Mode: resolver.SinkholeCustom, IPv4: netip.MustParseAddr("192.0.2.80"), IPv6: netip.MustParseAddr("2001:db8::80")}, dns.TypeAAAA, want{dns.RcodeSuccess, "2001:db8::80", false}},
		{"custom AAAA without ipv6 is NODATA", resolver.Sinkhole{Mode: resolver.SinkholeCustom, IPv4: netip.MustParseAddr("192.0.2.80")}, dns.TypeAAAA, want{dns.RcodeSuccess, "", true}},
	} {
		for _, edns := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "", true: " edns"}[edns], func(t *testing.T) {
				sink := tc.sink
				sink.TTL = ttl * time.Second
				r := resolver.Chain(next, resolver.Block(resolver.Blocker{Matcher: suffixMatcher{}, Sinkhole: &sink}))
				resp, err := r.Resolve(context.Background(), &resolver.Request{
					Msg: resolvertest.Query("WWW.Blocked.Example.", tc.qtype, edns),
				})
				if err != nil {
					t.Fatal(err)
				}
				m := resp.Msg
				if resp.Outcome != resolver.OutcomeBlocked || resp.List != "test-list" || resp.Rule != "blocked.example" {
					t.Fatalf("response %+v", resp)
				}
				if m.Rcode != tc.want.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.want.rcode])
				}
				switch {
				case tc.want.answer == "" && len(m.Answer) != 0:
					t.Fatalf("answer %v, want none", m.Answer)
				case tc.want.answer != "":
					if len(m.Answer) != 1 || m.Answer[0].Header().Ttl != ttl || m.Answer[0].Header().Name != "WWW.Blocked.Example." {
						t.Fatalf("answer %v", m.Answer)
					}
					var got string
					switch rr := m.Answer[0].(type) {
					case *dns.A:
						got = rr.A.String()
					case *dns.AAAA:
						got = rr.AAAA.String()
					}
					if got != tc.want.answer {
						t.Fatalf("answer %s, want %s", got, tc.want.answer)
					}
				}
				if tc.want.soa {
					soa, ok := soaOf(m)
					if !ok || soa.Hdr.Ttl != ttl || soa.Minttl != ttl || soa.Hdr.Name != "blocked.example." {
						t.Fatalf("authority %v, want SOA for blocked.example. with TTL and MINIMUM %d", m.Ns, ttl)
					}
				} else if len(m.Ns) != 0 {
					t.Fatalf("authority %v, want none", m.Ns)
				}
				ede := findEDE(m)
				if !edns {
					if m.IsEdns0() != nil {
						t.Fatal("OPT in reply to a client without EDNS")
					}
					return
				}
				if ede == nil || ede.InfoCode != dns.ExtendedErrorCodeBlocked || !strings.Contains(ede.ExtraText, "test-list") {
					t.Fatalf("EDE %v, want Blocked naming test-list", ede)
				}
			})
		}
	}
}

func soaOf(m *dns.Msg) (*dns.SOA, bool) {
	if len(m.Ns) != 1 {
		return nil, false
	}
	soa, ok := m.Ns[0].(*dns.SOA)
	return soa, ok
}

func TestBlockPassesOtherNames(t *testing.T) {
	called := 0
	next := resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		called++
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		return &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded}, nil
	})
	r := resolver.Chain(next, resolver.Block(resolver.Blocker{Matcher: suffixMatcher{}, Sinkhole: &resolver.Sinkhole{}, InspectAnswers: true}))
	for _, name := range []string{"notblocked.example.", "blocked.example.org.", "example."} {
		resp, err := r.Resolve(context.Background(), &resolver.Request{Msg: resolvertest.Query(name, dns.TypeA, false)})
		if err != nil || resp.Outcome != resolver.OutcomeForwarded {
			t.Errorf("%s: %+v %v", name, resp, err)
		}
	}
	if called != 3 {
		t.Errorf("next called %d times, want 3", called)
	}
}

func TestParseSinkholeMode(t *testing.T) {
	for _, s := range []string{"nxdomain", "NULL", "refused", "custom"} {
		if m, err := resolver.ParseSinkholeMode(s); err != nil || !strings.EqualFold(m.String(), s) {
			t.Errorf("%s: %v %v", s, m, err)
		}
	}
	if _, err := resolver.ParseSinkholeMode("zeroip"); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestBlockInspectsAnswers(t *testing.T) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	answers := map[string][]dns.RR{
		"cloaked.example.": {
			rr("cloaked.example. 60 IN CNAME hop.cdn.example."),
			rr("hop.cdn.example. 60 IN CNAME x.blocked.example."),
			rr("x.blocked.example. 60 IN A 192.0.2.1"),
		},
		"clean.example.":  {rr("clean.example. 60 IN CNAME hop.cdn.example."), rr("hop.cdn.example. 60 IN A 192.0.2.1")},
		"badip.example.":  {rr("badip.example. 60 IN A 192.0.2.1"), rr("badip.example. 60 IN A 203.0.113.9")},
		"badip6.example.": {rr("badip6.example. 60 IN AAAA 2001:db8:bad::1")},
	}
	next := resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		m.Answer = answers[req.Question().Name]
		return &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded}, nil
	})
	nets := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:bad::/48")}
	for _, tc := range []struct {
		name    string
		inspect bool
		nets    []netip.Prefix
		blocked bool
		list    string
		record  string
	}{
		{"cloaked.example.", true, nil, true, "test-list", "x.blocked.example."},
		{"cloaked.example.", false, nil, false, "", ""},
		{"clean.example.", true, nets, false, "", ""},
		{"badip.example.", true, nets, true, resolver.BlockedNetsList, "203.0.113.9"},
		{"badip.example.", true, nil, false, "", ""},
		{"badip6.example.", false, nets, true, resolver.BlockedNetsList, "2001:db8:bad::1"},
	} {
		t.Run(fmt.Sprintf("%s inspect=%v nets=%d", tc.name, tc.inspect, len(tc.nets)), func(t *testing.T) {
			r := resolver.Chain(next, resolver.Block(resolver.Blocker{
				Matcher: suffixMatcher{}, Sinkhole: &resolver.Sinkhole{TTL: time.Minute},
				InspectAnswers: tc.inspect, BlockedNets: tc.nets,
			}))
			resp, err := r.Resolve(context.Background(), &resolver.Request{Msg: resolvertest.Query(tc.name, dns.TypeA, true)})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.blocked {
				if resp.Outcome != resolver.OutcomeForwarded || len(resp.Msg.Answer) == 0 {
					t.Fatalf("not passed through: %+v", resp)
				}
				return
			}
			if resp.Outcome != resolver.OutcomeBlocked || resp.List != tc.list || !strings.Contains(resp.Record, tc.record) {
				t.Fatalf("outcome %v list %q record %q", resp.Outcome, resp.List, resp.Record)
			}
			m := resp.Msg
			if m.Rcode != dns.RcodeNameError || len(m.Answer) != 0 {
				t.Fatalf("blocked answer leaked: %v", m)
			}
			if soa, ok := soaOf(m); !ok || soa.Hdr.Name != tc.name {
				t.Errorf("SOA %v, want owner %s", m.Ns, tc.name)
			}
			if ede := findEDE(m); ede == nil || !strings.Contains(ede.ExtraText, tc.list) {
				t.Errorf("EDE %v", ede)
			}
		})
	}
}

func TestBlockGroups(t *testing.T) {
	next := resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		return &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded}, nil
	})
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	enforce := &resolver.Group{Name: "staff", Lists: 1}
	shadow := &resolver.Group{Name: "pilot", Lists: 1, LogOnly: true}
	without := &resolver.Group{Name: "lab", Lists: 0}
	exempt := &resolver.Group{Name: "finance", Lists: 1, Exemptions: []resolver.Exemption{
		{App: "test-app", Until: now.Add(time.Hour), Reason: "audit"},
	}}
	expired := &resolver.Group{Name: "old", Lists: 1, Exemptions: []resolver.Exemption{
		{List: "test-list", Until: now.Add(-time.Second), Reason: "over"},
	}}
	gs := &resolver.Groups{Default: enforce}
	for p, g := range map[string]*resolver.Group{"192.0.2.0/24": shadow, "192.0.2.128/25": without, "198.51.100.0/24": exempt, "203.0.113.0/24": expired} {
		gs.Add(netip.MustParsePrefix(p), g)
	}
	r := resolver.Chain(next, resolver.Policy(gs), resolver.Block(resolver.Blocker{
		Matcher: suffixMatcher{}, Sinkhole: &resolver.Sinkhole{}, Apps: map[string]string{"test-list": "test-app"},
		Now: func() time.Time { return now },
	}))
	for _, tc := range []struct {
		client  string
		outcome resolver.Outcome
		allowed resolver.Allowance
		group   string
	}{
		{"10.0.0.1", resolver.OutcomeBlocked, resolver.NotAllowed, "staff"},
		{"192.0.2.1", resolver.OutcomeForwarded, resolver.AllowedLogOnly, "pilot"},
		{"192.0.2.200", resolver.OutcomeForwarded, resolver.NotAllowed, ""}, // longest prefix: lab, list not selected
		{"198.51.100.7", resolver.OutcomeForwarded, resolver.AllowedExempt, "finance"},
		{"203.0.113.7", resolver.OutcomeBlocked, resolver.NotAllowed, "old"},
	} {
		resp, err := r.Resolve(context.Background(), &resolver.Request{
			Msg: resolvertest.Query("x.blocked.example", dns.TypeA, false), Client: netip.MustParseAddr(tc.client),
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Outcome != tc.outcome || resp.Allowed != tc.allowed || resp.Group != tc.group {
			t.Errorf("%s: outcome %v allowed %v group %q, want %v %v %q", tc.client, resp.Outcome, resp.Allowed, resp.Group, tc.outcome, tc.allowed, tc.group)
		}
		if tc.allowed != resolver.NotAllowed && (resp.List != "test-list" || resp.App != "test-app") {
			t.Errorf("%s: allowed match not annotated: %+v", tc.client, resp)
		}
	}
}

// TestSinkholeReplyAllocations: a sinkhole reply (message, question, SOA and authority section)
// is one allocation when the apex is fully qualified and the query has no EDNS, and it says
// what it should.
func TestSinkholeReplyAllocations(t *testing.T) {
	sink := &resolver.Sinkhole{Mode: resolver.SinkholeNXDOMAIN, TTL: 90 * time.Second}
	req := resolvertest.Query("www.ads.example.", dns.TypeA, false)
	req.Id, req.RecursionDesired = 4242, true
	var m *dns.Msg
	if n := testing.AllocsPerRun(100, func() { m = sink.Reply(req, "ads.example.", "blocked") }); n != 1 {
		t.Errorf("Reply: %v allocations, want 1", n)
	}
	soa, ok := m.Ns[0].(*dns.SOA)
	if m.Id != 4242 || !m.Response || !m.RecursionDesired || m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 || !ok ||
		soa.Hdr.Name != "ads.example." || soa.Minttl != 90 || m.Question[0] != req.Question[0] {
		t.Errorf("reply %v", m)
	}
}

// eachNameMatcher blocks every name under blocked.example with the name itself as the rule, so
// each blocked answer's SOA is owned by its own question's name.
type eachNameMatcher struct{}

func (eachNameMatcher) Match(name string) (string, string, bool) {
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	return "test-list", n, strings.HasSuffix(n, ".blocked.example")
}

func (m eachNameMatcher) MatchIn(name string, _ uint64) (string, string, bool) { return m.Match(name) }

// TestBlockedRepliesRecycled: sinkhole replies are recycled once the UDP server has packed them;
// under concurrent load every reply still carries its own ID, question and SOA, so none was
// handed out again while in use (run with -race).
func TestBlockedRepliesRecycled(t *testing.T) {
	next := resolver.ResolverFunc(func(context.Context, *resolver.Request) (*resolver.Response, error) {
		return nil, errors.New("not blocked")
	})
	ts := resolvertest.Serve(t, resolver.Chain(next, resolver.Block(resolver.Blocker{Matcher: eachNameMatcher{}, Sinkhole: &resolver.Sinkhole{Mode: resolver.SinkholeNXDOMAIN}})), listen.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Timeout: 5 * time.Second}
			for i := range 150 {
				name := fmt.Sprintf("n%d-%d.blocked.example.", g, i)
				q := resolvertest.Query(name, dns.TypeA, i%2 == 0)
				r, _, err := c.Exchange(q, ts.Addr)
				if err == nil && (r.Id != q.Id || r.Rcode != dns.RcodeNameError || len(r.Question) != 1 || r.Question[0].Name != name ||
					len(r.Ns) != 1 || r.Ns[0].Header().Name != name) {
					err = fmt.Errorf("asked %s (id %d), got %v", name, q.Id, r)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
