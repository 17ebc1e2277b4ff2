package resolver

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestRouterRoute(t *testing.T) {
	named := func(n string) Resolver {
		return ResolverFunc(func(context.Context, *Request) (*Response, error) {
			return &Response{Msg: new(dns.Msg), Upstream: n}, nil
		})
	}
	r := NewRouter(named("default"),
		Route{Zone: "corp.example", Resolver: named("corp"), Trusted: true},
		Route{Zone: "Lab.Corp.Example.", Resolver: named("lab")},
		Route{Zone: "corp.example.", Resolver: named("corp-again")}, // a later duplicate loses
		Route{Zone: "b.example.", Resolver: named("b")},
	)
	for _, tc := range []struct {
		name, want string
		trusted    bool
	}{
		{"corp.example.", "corp", true},
		{"www.corp.example.", "corp", true},
		{"WWW.CoRp.ExAmPlE.", "corp", true},
		{"x.lab.corp.example.", "lab", false}, // longest zone wins
		{"lab.corp.example.", "lab", false},
		{"notcorp.example.", "default", false},
		{"example.", "default", false},
		{".", "default", false},
		{"a\\.b.example.", "default", false}, // one label "a.b" under example.
		{"x.a\\.b.example.", "default", false},
		{"x.b.example.", "b", false},
		{"www.corp.example", "corp", true}, // not fully qualified: taken as absolute
		{strings.Repeat("a.", 130) + "corp.example.", "corp", true},
	} {
		req := &Request{Msg: new(dns.Msg).SetQuestion(tc.name, dns.TypeA)}
		resp, err := r.Resolve(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Upstream != tc.want {
			t.Errorf("%s: routed to %s, want %s", tc.name, resp.Upstream, tc.want)
		}
		if got := r.Trusted(tc.name); got != tc.trusted {
			t.Errorf("Trusted(%s) = %v, want %v", tc.name, got, tc.trusted)
		}
	}
}

func TestRouterRootZone(t *testing.T) {
	r := NewRouter(nil, Route{Zone: ".", Trusted: true}, Route{Zone: "example."})
	for name, want := range map[string]string{"www.example.": "example.", "www.other.": ".", ".": "."} {
		if rt := r.route(name); rt == nil || rt.Zone != want {
			t.Errorf("route(%s) = %v, want zone %s", name, rt, want)
		}
	}
}

func TestRouterRouteNoAlloc(t *testing.T) {
	var routes []Route
	for _, z := range LocallyServedZones() {
		routes = append(routes, Route{Zone: z})
	}
	r := NewRouter(nil, routes...)
	if n := testing.AllocsPerRun(100, func() {
		r.route("Some.Host.Example.com.")
		r.route("1.0.168.192.in-addr.arpa.")
	}); n != 0 {
		t.Errorf("route allocates %v times per call", n)
	}
}

// BenchmarkRouterTrusted is what block's Skip costs every query with the locally-served zones.
func BenchmarkRouterTrusted(b *testing.B) {
	var routes []Route
	for _, z := range LocallyServedZones() {
		routes = append(routes, Route{Zone: z})
	}
	r := NewRouter(nil, routes...)
	b.ReportAllocs()
	for b.Loop() {
		r.Trusted("tracker.ads.example.com.")
	}
}
