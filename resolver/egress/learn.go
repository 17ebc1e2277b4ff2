package egress

import (
	"context"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
)

// LearnOptions configure a Learner.
type LearnOptions struct {
	// Upstream resolves a blocked question for real (the router below every blocking stage).
	Upstream resolver.Resolver
	// Sink receives the addresses to block, the app the blocked name is filed under ("" for
	// none) and for how long (Owner.Learn); false: dropped.
	Sink func(app string, addrs []netip.Addr, ttl time.Duration) bool
	// MinTTL and MaxTTL clamp the lifetime of a learned address; zero: 5m and 24h.
	MinTTL, MaxTTL time.Duration
	// Shared is how long an address served for a name that is not blocked protects it from
	// being learned (shared CDN addresses); zero: 1h.
	Shared time.Duration
	// Timeout bounds one background resolution; zero: 5s.
	Timeout time.Duration
	// Observer counts what the learner does; any field may be nil.
	OnSkipped func(n int) // addresses not learned because a not-blocked name was served them
	OnDropped func()      // names not resolved: queue full
}

// Learner resolves blocked names in the background and sends their addresses to the egress
// sets. Its middleware adds nothing to a query but a queue send (blocked) or a sharded map
// insert (answers with addresses).
type Learner struct {
	opts   LearnOptions
	queue  chan learnJob
	served servedSet

	mu     sync.Mutex           // guards recent; taken for blocked queries only
	recent map[string]time.Time // name -> when it may be resolved again
}

const (
	learnWorkers  = 2
	learnQueueLen = 256
	relearnAfter  = 30 * time.Second
	maxRecent     = 4096
)

type learnJob struct{ name, app string }

// NewLearner makes a Learner; Run starts its workers.
func NewLearner(opts LearnOptions) *Learner {
	if opts.MinTTL <= 0 {
		opts.MinTTL = 5 * time.Minute
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = 24 * time.Hour
	}
	opts.MaxTTL = max(opts.MaxTTL, opts.MinTTL)
	if opts.Shared <= 0 {
		opts.Shared = time.Hour
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	l := &Learner{opts: opts, queue: make(chan learnJob, learnQueueLen), recent: map[string]time.Time{}}
	l.served.init(opts.Shared)
	return l
}

// Run resolves queued names until ctx ends.
func (l *Learner) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range learnWorkers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case job := <-l.queue:
					l.learn(ctx, job)
				}
			}
		})
	}
	wg.Wait()
}

// Middleware watches answers: blocked ones queue their name, others record their addresses as
// served for a name that is not blocked. Place it right above the block stage.
func (l *Learner) Middleware() resolver.Middleware {
	return func(next resolver.Resolver) resolver.Resolver {
		return resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
			resp, err := next.Resolve(ctx, req)
			if err != nil || resp == nil {
				return resp, err
			}
			switch resp.Outcome {
			case resolver.OutcomeBlocked:
				l.enqueue(req.Question(), resp.App)
			case resolver.OutcomeForwarded, resolver.OutcomeCached:
				if resp.List == "" { // not a match let through by policy
					l.noteServed(resp.Msg, req.Received)
				}
			}
			return resp, err
		})
	}
}

func (l *Learner) enqueue(q dns.Question, app string) {
	switch q.Qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS, dns.TypeANY:
	default:
		return
	}
	name := dns.CanonicalName(q.Name)
	now := time.Now()
	l.mu.Lock()
	if until, ok := l.recent[name]; ok && now.Before(until) {
		l.mu.Unlock()
		return
	}
	if len(l.recent) >= maxRecent {
		for n, until := range l.recent {
			if !now.Before(until) {
				delete(l.recent, n)
			}
		}
		if len(l.recent) >= maxRecent {
			l.mu.Unlock()
			l.dropped()
			return
		}
	}
	l.recent[name] = now.Add(relearnAfter)
	l.mu.Unlock()
	select {
	case l.queue <- learnJob{name: name, app: app}:
	default:
		l.mu.Lock()
		delete(l.recent, name)
		l.mu.Unlock()
		l.dropped()
	}
}

func (l *Learner) dropped() {
	if l.opts.OnDropped != nil {
		l.opts.OnDropped()
	}
}

func (l *Learner) noteServed(m *dns.Msg, at time.Time) {
	for _, rr := range m.Answer {
		if a, ok := resolver.RRAddr(rr); ok {
			l.served.add(a, at)
		}
	}
}

// learn resolves name's A and AAAA upstream and hands the addresses to the sink.
func (l *Learner) learn(ctx context.Context, job learnJob) {
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		addrs, ttl := l.resolve(ctx, job.name, qt)
		if len(addrs) == 0 {
			continue
		}
		now := time.Now()
		keep, skipped := addrs[:0], 0
		for _, a := range addrs {
			if l.served.has(a, now) {
				skipped++
				continue
			}
			keep = append(keep, a)
		}
		if skipped > 0 && l.opts.OnSkipped != nil {
			l.opts.OnSkipped(skipped)
		}
		if len(keep) > 0 && !l.opts.Sink(job.app, keep, Clamp(ttl, l.opts.MinTTL, l.opts.MaxTTL)) {
			l.dropped()
		}
	}
}

func (l *Learner) resolve(ctx context.Context, name string, qt uint16) ([]netip.Addr, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(name, qt)
	req := &resolver.Request{Msg: m, Client: netip.IPv6Loopback(), Transport: resolver.UDP, Received: time.Now()}
	resp, err := l.opts.Upstream.Resolve(ctx, req)
	if err != nil || resp == nil || resp.Msg == nil || resp.Msg.Rcode != dns.RcodeSuccess {
		return nil, 0
	}
	var (
		out []netip.Addr
		ttl uint32
	)
	for _, rr := range resp.Msg.Answer {
		a, ok := resolver.RRAddr(rr)
		if !ok || a.IsUnspecified() || a.IsLoopback() {
			continue
		}
		if len(out) == 0 || rr.Header().Ttl < ttl {
			ttl = rr.Header().Ttl
		}
		out = append(out, a)
	}
	return out, time.Duration(ttl) * time.Second
}

// servedSet remembers addresses recently served for names that are not blocked. It is sharded
// by address, each shard a current and a previous generation swapped every window (or when
// full), so memory is bounded and no lock is shared by all queries.
type servedSet struct {
	seed   maphash.Seed
	window time.Duration
	shards [64]servedShard
}

type servedShard struct {
	mu        sync.Mutex
	cur, prev map[netip.Addr]struct{}
	rotated   time.Time
	_         [32]byte // keep neighbouring shards' locks off one cache line
}

const maxServedPerShard = 4096

func (s *servedSet) init(window time.Duration) {
	s.seed = maphash.MakeSeed()
	s.window = window
}

func (s *servedSet) shard(a netip.Addr) *servedShard {
	b := a.As16()
	return &s.shards[maphash.Bytes(s.seed, b[:])%uint64(len(s.shards))]
}

func (s *servedSet) add(a netip.Addr, now time.Time) {
	sh := s.shard(a)
	sh.mu.Lock()
	if sh.cur == nil || now.Sub(sh.rotated) > s.window || len(sh.cur) >= maxServedPerShard {
		sh.prev, sh.cur, sh.rotated = sh.cur, make(map[netip.Addr]struct{}, 64), now
	}
	sh.cur[a] = struct{}{}
	sh.mu.Unlock()
}

func (s *servedSet) has(a netip.Addr, now time.Time) bool {
	sh := s.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.rotated) > 2*s.window {
		return false // both generations are older than the window
	}
	_, inCur := sh.cur[a]
	_, inPrev := sh.prev[a]
	return inCur || inPrev
}
