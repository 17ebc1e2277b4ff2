package upstream_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

func TestForwardSkipsBusyUpstream(t *testing.T) {
	release := make(chan struct{})
	slow := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		<-release
		resolvertest.A("192.0.2.1").ServeDNS(w, r)
	}))
	t.Cleanup(func() { close(release) })
	fast := resolvertest.Start(t, resolvertest.A("192.0.2.2"))
	var reasons atomic.Value
	f := &upstream.Forward{
		Upstreams:      []upstream.Upstream{resolvertest.Upstream(t, slow.Addr), resolvertest.Upstream(t, fast.Addr)},
		AttemptTimeout: 3 * time.Second,
		Limits:         []*resolver.Limiter{resolver.NewLimiter(1), nil},
		Observe: func(_ string, _ time.Duration, err error) {
			if upstream.ErrorReason(err) == "busy" {
				reasons.Store("busy")
			}
		},
	}
	go func() { _, _ = resolvertest.Resolve(t, f, resolvertest.Query("hold.example", dns.TypeA, false)) }()
	for slow.Queries() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := resolvertest.Resolve(t, f, resolvertest.Query("next.example", dns.TypeA, false))
	if err != nil || resp.Upstream != "udp://"+fast.Addr {
		t.Fatalf("second query: %+v %v", resp, err)
	}
	if reasons.Load() != "busy" {
		t.Errorf("busy upstream was not skipped (reason %v)", reasons.Load())
	}
}
