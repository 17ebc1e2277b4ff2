package resolver_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

func TestTruncateClient(t *testing.T) {
	for in, want := range map[string]string{
		"192.168.1.77":               "192.168.1.0",
		"::ffff:10.1.2.3":            "10.1.2.0",
		"2001:db8:1234:5678:9abc::1": "2001:db8:1234:5600::",
		"fe80::1":                    "fe80::",
	} {
		if got := resolver.TruncateClient(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("TruncateClient(%s) = %s, want %s", in, got, want)
		}
	}
	if got := resolver.TruncateClient(netip.Addr{}); got.IsValid() {
		t.Errorf("TruncateClient(zero) = %s", got)
	}
}

func TestParseClientPrivacy(t *testing.T) {
	for _, s := range []string{"full", "truncate", "omit"} {
		if p, err := resolver.ParseClientPrivacy(s); err != nil || p.String() != s {
			t.Errorf("%s: %v %v", s, p, err)
		}
	}
	if _, err := resolver.ParseClientPrivacy("hash"); err == nil {
		t.Error("hash accepted")
	}
}

// TestQueryLogFields: one line per query with the documented fields, the client as configured.
func TestQueryLogFields(t *testing.T) {
	forward := resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		if req.Question().Name == "fail.example." {
			return nil, errors.New("no upstream answered")
		}
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		return &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded, Upstream: "udp://192.0.2.1:53"}, nil
	})
	block := resolver.Block(resolver.Blocker{Matcher: suffixMatcher{}, Sinkhole: &resolver.Sinkhole{}, Apps: map[string]string{"test-list": "alipay"}})
	for _, tc := range []struct {
		privacy resolver.ClientPrivacy
		client  any // nil: no client field
	}{
		{resolver.ClientFull, "192.0.2.77"},
		{resolver.ClientTruncate, "192.0.2.0"},
		{resolver.ClientOmit, nil},
	} {
		t.Run(tc.privacy.String(), func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			r := resolver.Chain(forward, resolver.QueryLog(zap.New(core), tc.privacy), block)
			for _, name := range []string{"ok.example", "x.blocked.example", "fail.example"} {
				_, _ = r.Resolve(context.Background(), &resolver.Request{
					Msg: resolvertest.Query(name, dns.TypeAAAA, false), Client: netip.MustParseAddr("192.0.2.77"),
					Transport: resolver.DoH, Received: time.Now(),
				})
			}
			lines := logs.AllUntimed()
			if len(lines) != 3 {
				t.Fatalf("%d lines, want 3", len(lines))
			}
			for i, want := range []map[string]any{
				{"qname": "ok.example.", "qtype": "AAAA", "transport": "https", "outcome": "forwarded", "rcode": "NOERROR", "upstream": "udp://192.0.2.1:53"},
				{"qname": "x.blocked.example.", "outcome": "blocked", "rcode": "NXDOMAIN", "list": "test-list", "rule": "blocked.example", "app": "alipay"},
				{"qname": "fail.example.", "outcome": "error", "rcode": "SERVFAIL", "error": "no upstream answered"},
			} {
				got := lines[i].ContextMap()
				for k, v := range want {
					if got[k] != v {
						t.Errorf("line %d: %s = %v, want %v", i, k, got[k], v)
					}
				}
				if got["client"] != tc.client {
					t.Errorf("line %d: client %v, want %v", i, got["client"], tc.client)
				}
				if _, ok := got["duration"].(time.Duration); !ok {
					t.Errorf("line %d: duration %v", i, got["duration"])
				}
			}
		})
	}
}
