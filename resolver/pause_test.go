package resolver_test

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

func TestPauseState(t *testing.T) {
	var p resolver.Pause
	now := time.Unix(1000, 0)
	if p.Active(now) || !p.Until(now).IsZero() {
		t.Fatal("the zero Pause is active")
	}
	p.Set(now.Add(time.Minute))
	if !p.Active(now) || !p.Until(now).Equal(now.Add(time.Minute)) {
		t.Errorf("after Set: active %v until %v", p.Active(now), p.Until(now))
	}
	if p.Active(now.Add(time.Minute)) {
		t.Error("still active at its deadline")
	}
	p.Clear()
	if p.Active(now) {
		t.Error("active after Clear")
	}
}

// TestBlockPaused: while paused, a blocked name and a blocked CNAME target are answered normally
// and marked AllowedPaused (with and without groups); past the deadline they are blocked again.
func TestBlockPaused(t *testing.T) {
	next := resolver.ResolverFunc(func(_ context.Context, req *resolver.Request) (*resolver.Response, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		if req.Question().Name == "cloaked.example." {
			rr, _ := dns.NewRR("cloaked.example. 60 IN CNAME x.blocked.example.")
			m.Answer = append(m.Answer, rr)
		}
		return &resolver.Response{Msg: m, Outcome: resolver.OutcomeForwarded}, nil
	})
	now := time.Unix(1000, 0)
	pause := &resolver.Pause{}
	r := resolver.Chain(next, resolver.Block(resolver.Blocker{
		Matcher: suffixMatcher{}, Sinkhole: &resolver.Sinkhole{}, InspectAnswers: true,
		Pause: pause, Now: func() time.Time { return now },
	}))
	ask := func(name string, group *resolver.Group) *resolver.Response {
		t.Helper()
		resp, err := r.Resolve(context.Background(), &resolver.Request{Msg: resolvertest.Query(name, dns.TypeA, false), Group: group})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	pause.Set(now.Add(time.Minute))
	for _, g := range []*resolver.Group{nil, {Name: "kids", Lists: 1}} {
		for _, name := range []string{"www.blocked.example", "cloaked.example"} {
			resp := ask(name, g)
			if resp.Outcome != resolver.OutcomeForwarded || resp.Allowed != resolver.AllowedPaused || resp.List != "test-list" {
				t.Errorf("%s (group %v) while paused: %+v", name, g, resp)
			}
			if g != nil && resp.Group != "kids" {
				t.Errorf("group %q, want kids", resp.Group)
			}
		}
	}
	now = now.Add(time.Minute)
	for _, name := range []string{"www.blocked.example", "cloaked.example"} {
		if resp := ask(name, nil); resp.Outcome != resolver.OutcomeBlocked || resp.Allowed != resolver.NotAllowed {
			t.Errorf("%s after the pause: %+v", name, resp)
		}
	}
	pause.Set(now.Add(time.Hour))
	pause.Clear()
	if resp := ask("www.blocked.example", nil); resp.Outcome != resolver.OutcomeBlocked {
		t.Errorf("after Clear: %+v", resp)
	}
	if resolver.AllowedPaused.String() != "paused" {
		t.Errorf("AllowedPaused is %q", resolver.AllowedPaused)
	}
}
