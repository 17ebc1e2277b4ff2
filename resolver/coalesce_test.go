package resolver_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

// heldUpstream answers A queries (TTL 300) once released; received gets a value per query.
type heldUpstream struct {
	srv      *resolvertest.Server
	received chan struct{}
	release  chan struct{}
	once     sync.Once
}

func startHeld(t *testing.T) *heldUpstream {
	u := &heldUpstream{received: make(chan struct{}, 100), release: make(chan struct{})}
	u.srv = resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.received <- struct{}{}
		<-u.release
		answerA(300)(w, r)
	}))
	t.Cleanup(u.Release) // before the server shuts down
	return u
}

func (u *heldUpstream) Release() { u.once.Do(func() { close(u.release) }) }

type result struct {
	resp *resolver.Response
	err  error
}

// coalesceRun sends n identical queries through chain while the upstream holds the first: the
// first with leaderCtx, the others once it has reached the upstream; joined must yield once per
// query that joins. It releases the upstream when all have joined (after calling cancelLeader,
// if set) and returns the results, the leader's first.
func coalesceRun(t *testing.T, chain resolver.Resolver, u *heldUpstream, joined <-chan struct{}, n int,
	leaderCtx context.Context, cancelLeader func()) []result {
	t.Helper()
	names := []string{"same.example", "SAME.example", "Same.Example"}
	ask := func(ctx context.Context, i int, out chan<- result) {
		m := resolvertest.Query(names[i%len(names)], dns.TypeA, i%2 == 0) // EDNS or not: one key
		resp, err := chain.Resolve(ctx, &resolver.Request{Msg: m, Received: time.Now()})
		out <- result{resp, err}
	}
	leader := make(chan result, 1)
	go ask(leaderCtx, 0, leader)
	wait(t, u.received, "the first query to reach the upstream")
	followers := make(chan result, n)
	for i := 1; i < n; i++ {
		go ask(context.Background(), i, followers)
	}
	for i := 1; i < n; i++ {
		wait(t, joined, "the other queries to join the first")
	}
	if cancelLeader != nil {
		cancelLeader()
	}
	u.Release()
	results := []result{<-leader}
	for i := 1; i < n; i++ {
		results = append(results, <-followers)
	}
	return results
}

// wait receives from ch; the timeout only turns a deadlock (the feature broken) into a failure.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}

func checkShared(t *testing.T, u *heldUpstream, results []result) {
	t.Helper()
	if got := u.srv.Queries(); got != 1 {
		t.Errorf("upstream queries = %d, want 1", got)
	}
	msgs := map[*dns.Msg]bool{}
	rrs := map[dns.RR]bool{}
	for i, r := range results {
		if r.err != nil {
			t.Errorf("query %d: %v", i, r.err)
			continue
		}
		if len(r.resp.Msg.Answer) != 1 {
			t.Errorf("query %d: %v", i, r.resp.Msg)
			continue
		}
		if msgs[r.resp.Msg] || rrs[r.resp.Msg.Answer[0]] {
			t.Errorf("query %d shares its reply with another", i)
		}
		msgs[r.resp.Msg], rrs[r.resp.Msg.Answer[0]] = true, true
	}
}

func TestCoalesce(t *testing.T) {
	const n = 20
	u := startHeld(t)
	joined := make(chan struct{}, n)
	fwd := &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, "udp://"+u.srv.Addr)}, AttemptTimeout: time.Minute}
	chain := resolver.Chain(fwd, resolver.CoalesceWithJoinHook(time.Minute, func() { joined <- struct{}{} }))
	results := coalesceRun(t, chain, u, joined, n, context.Background(), nil)
	checkShared(t, u, results)

	// Once answered, the next query is a new exchange (Coalesce alone does not cache).
	if _, err := chain.Resolve(context.Background(), &resolver.Request{Msg: resolvertest.Query("same.example", dns.TypeA, false)}); err != nil {
		t.Fatal(err)
	}
	if got := u.srv.Queries(); got != 2 {
		t.Errorf("upstream queries after the flight = %d, want 2", got)
	}
}

func TestCacheCoalescesMisses(t *testing.T) {
	const n = 20
	u := startHeld(t)
	clock := newFakeClock()
	var counts cacheCounts
	c := resolver.NewCache(resolver.CacheOptions{Now: clock.Now, FetchTimeout: time.Minute}, counts.observer())
	t.Cleanup(c.Close)
	joined := make(chan struct{}, n)
	resolver.SetCacheJoinHook(c, func() { joined <- struct{}{} })
	fwd := &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, "udp://"+u.srv.Addr)}, AttemptTimeout: time.Minute}
	chain := resolver.Chain(fwd, c.Middleware())

	results := coalesceRun(t, chain, u, joined, n, context.Background(), nil)
	checkShared(t, u, results)
	if m, h := counts.miss.Load(), counts.hit.Load(); m != n || h != 0 {
		t.Errorf("misses %d hits %d, want %d and 0", m, h, n)
	}
	resp, err := chain.Resolve(context.Background(), &resolver.Request{Msg: resolvertest.Query("same.example", dns.TypeA, false)})
	if err != nil || resp.Outcome != resolver.OutcomeCached || u.srv.Queries() != 1 {
		t.Errorf("after the flight: %v %v, upstream queries %d; want a hit", resp, err, u.srv.Queries())
	}
}

func TestCoalesceLeaderCanceled(t *testing.T) {
	const n = 10
	for _, tc := range []struct {
		name  string
		chain func(t *testing.T, next resolver.Resolver, joined chan struct{}) resolver.Resolver
	}{
		{"Coalesce", func(_ *testing.T, next resolver.Resolver, joined chan struct{}) resolver.Resolver {
			return resolver.Chain(next, resolver.CoalesceWithJoinHook(time.Minute, func() { joined <- struct{}{} }))
		}},
		{"Cache", func(t *testing.T, next resolver.Resolver, joined chan struct{}) resolver.Resolver {
			c := resolver.NewCache(resolver.CacheOptions{FetchTimeout: time.Minute}, resolver.CacheObserver{})
			t.Cleanup(c.Close)
			resolver.SetCacheJoinHook(c, func() { joined <- struct{}{} })
			return resolver.Chain(next, c.Middleware())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := startHeld(t)
			joined := make(chan struct{}, n)
			fwd := &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, "udp://"+u.srv.Addr)}, AttemptTimeout: time.Minute}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			results := coalesceRun(t, tc.chain(t, fwd, joined), u, joined, n, ctx, cancel)
			// The shared exchange does not run on the leader's context: everyone gets the answer,
			// the leader too (it made the exchange, and waited for it).
			checkShared(t, u, results)
		})
	}
}

func TestCoalesceFollowerCanceled(t *testing.T) {
	u := startHeld(t)
	joined := make(chan struct{}, 1)
	fwd := &upstream.Forward{Upstreams: []upstream.Upstream{resolvertest.Upstream(t, "udp://"+u.srv.Addr)}, AttemptTimeout: time.Minute}
	chain := resolver.Chain(fwd, resolver.CoalesceWithJoinHook(time.Minute, func() { joined <- struct{}{} }))
	ask := func(ctx context.Context, out chan<- result) {
		resp, err := chain.Resolve(ctx, &resolver.Request{Msg: resolvertest.Query("same.example", dns.TypeA, false)})
		out <- result{resp, err}
	}
	leader, follower := make(chan result, 1), make(chan result, 1)
	go ask(context.Background(), leader)
	wait(t, u.received, "the first query to reach the upstream")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ask(ctx, follower)
	wait(t, joined, "the second query to join")
	cancel()
	// The follower stops waiting at once, while the upstream still holds the shared exchange.
	if r := wait(t, follower, "the canceled follower"); !errors.Is(r.err, context.Canceled) {
		t.Errorf("canceled follower: %v, %v; want its context's error", r.resp, r.err)
	}
	u.Release()
	checkShared(t, u, []result{wait(t, leader, "the leader")})
}

func TestCoalescePanic(t *testing.T) {
	// The leader's panic reaches its own caller (the Handler recovers and counts it); the
	// followers get an error instead of waiting forever.
	entered, release := make(chan struct{}), make(chan struct{})
	next := resolver.ResolverFunc(func(context.Context, *resolver.Request) (*resolver.Response, error) {
		close(entered)
		<-release
		panic("boom")
	})
	joined := make(chan struct{}, 1)
	chain := resolver.Chain(next, resolver.CoalesceWithJoinHook(time.Minute, func() { joined <- struct{}{} }))
	ask := func() (*resolver.Response, error) {
		return chain.Resolve(context.Background(), &resolver.Request{Msg: resolvertest.Query("p.example", dns.TypeA, false)})
	}
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_, _ = ask()
	}()
	wait(t, entered, "the leader to call next")
	follower := make(chan result, 1)
	go func() {
		resp, err := ask()
		follower <- result{resp, err}
	}()
	wait(t, joined, "the follower to join")
	close(release)
	if v := wait(t, panicked, "the leader"); v != "boom" {
		t.Errorf("leader recovered %v, want the panic", v)
	}
	if r := wait(t, follower, "the follower"); r.err == nil {
		t.Errorf("follower got %v, want an error", r.resp)
	}
}

func TestCacheAfterCloseStillAnswers(t *testing.T) {
	env := newCacheEnv(t, answerA(300), resolver.CacheOptions{PrefetchHits: 1})
	env.cache.Close()
	q := resolvertest.Query("late.example", dns.TypeA, false)
	env.want(t, q, resolver.OutcomeForwarded, 1) // the miss runs in the caller
	env.clock.Advance(295 * time.Second)
	env.want(t, q, resolver.OutcomeCached, 1) // would prefetch, but the cache is closed
	if p := env.n.prefetch.Load(); p != 0 {
		t.Errorf("prefetches after Close: %d", p)
	}
}
