package egress

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/resolver"
)

// Plan is what a Runtime needs of one configuration. The program derives it from its config at
// start and on every reload, so this package does not depend on the config format.
type Plan struct {
	// Enabled false on a reload only warns: turning egress off applies at the next start.
	Enabled bool
	// Learn and Cleanup apply at start only (a reload that changes them warns).
	Learn   bool
	Cleanup bool
	// LearnMinTTL, LearnMaxTTL and LearnTimeout are the learner's LearnOptions.
	LearnMinTTL, LearnMaxTTL, LearnTimeout time.Duration
	// Downloads are the address lists fetched from a URL; DownloadTimeout bounds one fetch.
	Downloads       []Download
	DownloadTimeout time.Duration
	// Sources are the address lists to load (URL lists read the copy f caches).
	Sources func(f *blocklist.Fetcher) []blocklist.Source
	// Ruleset turns the loaded addresses into the ruleset's input as of now; next is when it
	// must be built again (an exemption ends; zero: never).
	Ruleset func(ips *blocklist.IPSet, now time.Time) (_ Config, next time.Time)
}

// Download is one address list fetched from URL and refreshed every Every.
type Download struct {
	Name, URL string
	Every     time.Duration
}

// Runtime is the running egress enforcement: the address lists, the nftables owner, the
// learner and their metrics. It lives as long as the server; reloads Update it. A nil *Runtime
// (egress off) is valid and does nothing.
type Runtime struct {
	log     *zap.Logger
	owner   *Owner
	metrics *Metrics
	learner *Learner
	fetcher *blocklist.Fetcher
	// upstream is the current state's router, which the learner resolves blocked names with.
	upstream atomic.Pointer[resolver.Resolver]
	stop     context.CancelFunc

	mu      sync.Mutex // serializes update
	plan    Plan
	sources []blocklist.Source
	lists   *blocklist.LiveIPs
	// refreshed is signalled by a URL list download with new content and by an ending exemption.
	refreshed     chan struct{}
	refreshCancel context.CancelFunc
	expiry        *time.Timer // rebuilds when an exemption ends
}

// RuntimeOptions are what a Runtime keeps from its start to its Close.
type RuntimeOptions struct {
	// Fetcher downloads the URL lists into its cache directory.
	Fetcher *blocklist.Fetcher
	// Registry is where the egress metrics are registered.
	Registry prometheus.Registerer
	Log      *zap.Logger
	// NetNSFd, if non-zero, is the network namespace to own the table in (tests).
	NetNSFd int
}

// StartRuntime installs the egress table described by p, first downloading the URL lists that
// have no cached copy. Failing to own the table (no CAP_NET_ADMIN, no nf_tables) is an error
// that says how to fix it.
func StartRuntime(p Plan, o RuntimeOptions) (*Runtime, error) {
	m, err := NewMetrics(o.Registry)
	if err != nil {
		return nil, fmt.Errorf("egress metrics: %w", err)
	}
	log := o.Log
	r := &Runtime{log: log, metrics: m, fetcher: o.Fetcher, refreshed: make(chan struct{}, 1)}
	r.download(p, false)
	r.sources = p.Sources(r.fetcher)
	if r.lists, err = blocklist.NewLiveIPs(r.sources); err != nil {
		return nil, fmt.Errorf("egress.ip_lists: %w", err)
	}
	ecfg, next := p.Ruleset(r.lists.Set(), time.Now())
	rs, err := Build(ecfg)
	if err != nil {
		return nil, err
	}
	opts := m.Options(Options{NetNSFd: o.NetNSFd, Cleanup: p.Cleanup}, r.onUpdate)
	if r.owner, err = Start(rs, opts); err != nil {
		return nil, err
	}
	m.Watch(r.owner, rs)
	r.plan = p
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	if p.Learn {
		r.learner = NewLearner(LearnOptions{
			Upstream: resolver.ResolverFunc(r.resolveUpstream), Sink: r.owner.Learn,
			MinTTL: p.LearnMinTTL, MaxTTL: p.LearnMaxTTL, Timeout: p.LearnTimeout,
			OnSkipped: func(n int) { m.Skipped.Add(float64(n)) }, OnDropped: m.LearnDropped.Inc,
		})
		go r.learner.Run(ctx)
	}
	r.refresh(p)
	r.rebuildAt(next)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.refreshed:
				r.update(nil)
			}
		}
	}()
	log.Info("egress table installed", zap.String("table", "inet "+rs.Table), zap.Bool("rules", ecfg.Rules),
		zap.String("force_dns", ecfg.ForceDNS), zap.Bool("learn", p.Learn), zap.Int("addresses", r.lists.Set().Len()))
	return r, nil
}

func (r *Runtime) onUpdate(err error) {
	if err != nil {
		r.log.Error("egress: nftables update failed; DNS keeps serving, the table keeps its previous state", zap.Error(err))
	} else {
		r.log.Info("egress: nftables updates succeed again")
	}
}

func (r *Runtime) resolveUpstream(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
	up := r.upstream.Load()
	if up == nil {
		return nil, errors.New("egress: no upstream yet")
	}
	return (*up).Resolve(ctx, req)
}

// LearnStage is the learning middleware of a chain whose router is router (nil without learn).
// The learner resolves blocked names with the router of the chain built last.
func (r *Runtime) LearnStage(router resolver.Resolver) resolver.Middleware {
	if r == nil || r.learner == nil {
		return nil
	}
	r.upstream.Store(&router)
	return r.learner.Middleware()
}

// Update re-reads the address lists after a reload and applies the ruleset of p. A list that
// fails keeps its last good addresses; a plan that cannot be built keeps the running table.
func (r *Runtime) Update(p Plan) {
	if r == nil {
		return
	}
	r.update(&p)
}

// update is Update; p nil: the running plan (a download changed a list, an exemption ended).
func (r *Runtime) update(p *Plan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p == nil {
		p = &r.plan
	}
	if !p.Enabled || p.Learn != r.plan.Learn || p.Cleanup != r.plan.Cleanup {
		r.log.Warn("egress: enabled, learn and cleanup apply at the next start")
	}
	if !reflect.DeepEqual(p.Downloads, r.plan.Downloads) {
		r.refresh(*p)
	}
	if sources := p.Sources(r.fetcher); !reflect.DeepEqual(sources, r.sources) {
		lists, err := blocklist.NewLiveIPs(sources)
		if err != nil {
			r.log.Error("egress: address lists of the new config do not load; keeping the running ones", zap.Error(err))
			return
		}
		r.lists, r.sources = lists, sources
	} else if _, failed := r.lists.Reload(); failed != nil {
		for name, err := range failed {
			r.log.Error("egress: address list reload failed; it keeps its last good addresses", zap.String("list", name), zap.Error(err))
		}
	}
	ecfg, next := p.Ruleset(r.lists.Set(), time.Now())
	rs, err := Build(ecfg)
	if err != nil {
		r.log.Error("egress: cannot build the new ruleset; the running table stays", zap.Error(err))
		return
	}
	r.rebuildAt(next)
	r.plan = *p
	r.owner.Apply(rs)
	r.metrics.Watch(r.owner, rs)
}

// rebuildAt arranges an update when an exemption ends (zero: none pending).
func (r *Runtime) rebuildAt(t time.Time) {
	if r.expiry != nil {
		r.expiry.Stop()
		r.expiry = nil
	}
	if t.IsZero() {
		return
	}
	r.expiry = time.AfterFunc(time.Until(t)+10*time.Millisecond, func() {
		select {
		case r.refreshed <- struct{}{}:
		default:
		}
	})
}

// Download fetches every URL list of p again (an admin's reload with download).
func (r *Runtime) Download(p Plan) {
	if r == nil {
		return
	}
	r.download(p, true)
}

// download fetches the URL lists of p (all, or those without a cached copy).
func (r *Runtime) download(p Plan, all bool) {
	for _, d := range p.Downloads {
		if _, ok := r.fetcher.Cached(d.Name, d.URL); ok && !all {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.DownloadTimeout)
		res, err := r.fetcher.Fetch(ctx, d.Name, d.URL)
		cancel()
		if err != nil {
			r.log.Warn("egress: address list download failed", zap.String("list", d.Name), zap.Bool("cached_copy", res.FromCache), zap.Error(err))
		}
	}
}

// refresh (re)starts the periodic downloads of the URL lists; new content triggers update.
func (r *Runtime) refresh(p Plan) {
	if r.refreshCancel != nil {
		r.refreshCancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.refreshCancel = cancel
	for _, d := range p.Downloads {
		go r.fetcher.Refresh(ctx, d.Name, d.URL, d.Every, func(res blocklist.FetchResult, err error) {
			if err != nil {
				r.log.Error("egress: address list refresh failed; serving the last good copy", zap.String("list", d.Name), zap.Error(err))
				return
			}
			if res.Changed {
				select {
				case r.refreshed <- struct{}{}:
				default:
				}
			}
		})
	}
}

// Ready is nil unless the last netlink update failed.
func (r *Runtime) Ready() error {
	if r == nil {
		return nil
	}
	if err := r.owner.Status(); err != nil {
		return fmt.Errorf("egress degraded: the last nftables update failed: %w", err)
	}
	return nil
}

// Explain reports the sets of the installed table, learned ones included, that hold a.
func (r *Runtime) Explain(ctx context.Context, a netip.Addr) []Hit {
	return r.owner.Explain(ctx, a)
}

// Close stops the downloads, timers and learner, and releases the table (deleting it with
// Cleanup).
func (r *Runtime) Close() {
	if r == nil {
		return
	}
	r.stop()
	r.mu.Lock()
	if r.refreshCancel != nil {
		r.refreshCancel()
	}
	r.rebuildAt(time.Time{})
	r.mu.Unlock()
	if err := r.owner.Close(); err != nil {
		r.log.Error("egress: cleanup failed", zap.Error(err))
	}
}
