package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/cmd/dnsfence/admin"
	"github.com/dnsfence/dnsfence/configs"
	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/egress"
)

// egressRuntime is the running egress enforcement: the address lists, the nftables owner, the
// learner and their metrics. It lives as long as serve; config reloads update it. A nil
// *egressRuntime (egress off) is valid and does nothing.
type egressRuntime struct {
	log     *zap.Logger
	owner   *egress.Owner
	metrics *egress.Metrics
	learner *egress.Learner
	fetcher *blocklist.Fetcher
	// upstream is the current state's router, which the learner resolves blocked names with.
	upstream atomic.Pointer[resolver.Resolver]
	stop     context.CancelFunc

	mu      sync.Mutex // serializes update
	cfg     *configs.Config
	sources []blocklist.Source
	lists   *blocklist.LiveIPs
	// refreshed is signalled by a URL ip_list download with new content.
	refreshed     chan struct{}
	refreshCancel context.CancelFunc
	expiry        *time.Timer // rebuilds when an exemption ends
}

// startEgress installs the egress table (nil, nil when egress is off). Failing to own the table
// (no CAP_NET_ADMIN, no nf_tables) is a startup error that says how to fix it.
func startEgress(cfg *configs.Config, reg prometheus.Registerer, log *zap.Logger) (*egressRuntime, error) {
	if !cfg.Egress.Enabled {
		return nil, nil
	}
	m, err := egress.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("egress metrics: %w", err)
	}
	r := &egressRuntime{log: log, metrics: m, fetcher: cfg.EgressFetcher("dnsfence/" + version), refreshed: make(chan struct{}, 1)}
	r.download(cfg, false)
	r.sources = cfg.EgressSources(r.fetcher)
	if r.lists, err = blocklist.NewLiveIPs(r.sources); err != nil {
		return nil, fmt.Errorf("egress.ip_lists: %w", err)
	}
	ecfg, next := cfg.EgressRuleset(r.lists.Set(), time.Now())
	rs, err := egress.Build(ecfg)
	if err != nil {
		return nil, err
	}
	opts := m.Options(egress.Options{Cleanup: cfg.Egress.Cleanup}, r.onUpdate)
	if r.owner, err = egress.Start(rs, opts); err != nil {
		return nil, err
	}
	m.Watch(r.owner, rs)
	r.cfg = cfg
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	if cfg.Egress.Learn {
		r.learner = egress.NewLearner(egress.LearnOptions{
			Upstream: resolver.ResolverFunc(r.resolveUpstream), Sink: r.owner.Learn,
			MinTTL: cfg.Egress.LearnMinTTL, MaxTTL: cfg.Egress.LearnMaxTTL, Timeout: cfg.QueryTimeout,
			OnSkipped: func(n int) { m.Skipped.Add(float64(n)) }, OnDropped: m.LearnDropped.Inc,
		})
		go r.learner.Run(ctx)
	}
	r.refresh(cfg)
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
	log.Info("egress table installed", zap.String("table", "inet "+rs.Table), zap.Bool("rules", cfg.Egress.Rules),
		zap.String("force_dns", cfg.Egress.ForceDNSMode()), zap.Bool("learn", cfg.Egress.Learn), zap.Int("addresses", r.lists.Set().Len()))
	return r, nil
}

func (r *egressRuntime) onUpdate(err error) {
	if err != nil {
		r.log.Error("egress: nftables update failed; DNS keeps serving, the table keeps its previous state", zap.Error(err))
	} else {
		r.log.Info("egress: nftables updates succeed again")
	}
}

func (r *egressRuntime) resolveUpstream(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
	up := r.upstream.Load()
	if up == nil {
		return nil, errors.New("egress: no upstream yet")
	}
	return (*up).Resolve(ctx, req)
}

// learnStage is the learning middleware of a chain whose router is router (nil without learn).
func (r *egressRuntime) learnStage(router resolver.Resolver) resolver.Middleware {
	if r == nil || r.learner == nil {
		return nil
	}
	r.upstream.Store(&router)
	return r.learner.Middleware()
}

// update re-reads the address lists after a reload (cfg nil: the running config) and applies
// the new ruleset. A list that fails keeps its last good addresses; a config that cannot be
// built keeps the running table.
func (r *egressRuntime) update(cfg *configs.Config) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cfg == nil {
		cfg = r.cfg
	}
	if !cfg.Egress.Enabled || cfg.Egress.Learn != r.cfg.Egress.Learn || cfg.Egress.Cleanup != r.cfg.Egress.Cleanup {
		r.log.Warn("egress: enabled, learn and cleanup apply at the next start")
	}
	if !reflect.DeepEqual(cfg.Egress.IPLists, r.cfg.Egress.IPLists) {
		r.refresh(cfg)
	}
	if sources := cfg.EgressSources(r.fetcher); !reflect.DeepEqual(sources, r.sources) {
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
	ecfg, next := cfg.EgressRuleset(r.lists.Set(), time.Now())
	rs, err := egress.Build(ecfg)
	if err != nil {
		r.log.Error("egress: cannot build the new ruleset; the running table stays", zap.Error(err))
		return
	}
	r.rebuildAt(next)
	r.cfg = cfg
	r.owner.Apply(rs)
	r.metrics.Watch(r.owner, rs)
}

// rebuildAt arranges an update when an exemption ends (zero: none pending).
func (r *egressRuntime) rebuildAt(t time.Time) {
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

// download fetches the URL ip_lists (all, or those without a cached copy).
func (r *egressRuntime) download(cfg *configs.Config, all bool) {
	for _, l := range cfg.Egress.IPLists {
		if l.URL == "" {
			continue
		}
		if _, ok := r.fetcher.Cached(l.Name, l.URL); ok && !all {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*cfg.Downloads.Timeout)
		res, err := r.fetcher.Fetch(ctx, l.Name, l.URL)
		cancel()
		if err != nil {
			r.log.Warn("egress: address list download failed", zap.String("list", l.Name), zap.Bool("cached_copy", res.FromCache), zap.Error(err))
		}
	}
}

// refresh (re)starts the periodic downloads of the URL ip_lists; new content triggers update.
func (r *egressRuntime) refresh(cfg *configs.Config) {
	if r.refreshCancel != nil {
		r.refreshCancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.refreshCancel = cancel
	for _, l := range cfg.Egress.IPLists {
		if l.URL == "" {
			continue
		}
		go r.fetcher.Refresh(ctx, l.Name, l.URL, l.RefreshInterval(), func(res blocklist.FetchResult, err error) {
			if err != nil {
				r.log.Error("egress: address list refresh failed; serving the last good copy", zap.String("list", l.Name), zap.Error(err))
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

// ready is nil unless the last netlink update failed.
func (r *egressRuntime) ready() error {
	if r == nil {
		return nil
	}
	if err := r.owner.Status(); err != nil {
		return fmt.Errorf("egress degraded: the last nftables update failed: %w", err)
	}
	return nil
}

// explain answers /api/check?ip=.
func (r *egressRuntime) explain(a netip.Addr) (any, error) {
	if r == nil {
		return nil, errors.New("egress is not enabled")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return admin.ExplainAddr(a, r.owner.Explain(ctx, a)), nil
}

func (r *egressRuntime) close() {
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

// egressRuleset builds the ruleset the config describes, from the address lists on disk (URL
// lists from their cached copy), for `dnsfence egress rules`, check and -config.check.
func egressRuleset(cfg *configs.Config) (*egress.Ruleset, error) {
	ips, err := blocklist.LoadIPs(cfg.EgressSources(cfg.EgressFetcher("dnsfence/" + version)))
	if err != nil {
		return nil, fmt.Errorf("%s: egress address lists: %w", cfg.Source(), err)
	}
	ecfg, _ := cfg.EgressRuleset(ips, time.Now())
	return egress.Build(ecfg)
}

// runEgress is `dnsfence egress rules`: print the nft ruleset the config installs.
func runEgress(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rules" {
		fmt.Fprintln(stderr, "usage: dnsfence egress rules [-config FILE]   (print the nftables ruleset egress installs)")
		return errUsage
	}
	opts, rest, err := parseFlags("dnsfence egress rules", args[1:], stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "dnsfence egress rules: unexpected argument %q\n", rest[0])
		return errUsage
	}
	cfg, err := loadConfig(opts)
	if err != nil {
		return err
	}
	rs, err := egressRuleset(cfg)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, egress.Render(rs))
	return err
}

// checkEgressConfig is -config.check's egress part: the lists load, the ruleset builds, and this
// process could own the table (nothing is changed).
func checkEgressConfig(cfg *configs.Config, stdout io.Writer) error {
	if !cfg.Egress.Enabled {
		return nil
	}
	rs, err := egressRuleset(cfg)
	if err != nil {
		return err
	}
	if err := egress.Check(); err != nil {
		return err
	}
	n := 0
	for _, s := range rs.Sets {
		if s.Source != "" {
			n += len(s.Prefixes)
		}
	}
	fmt.Fprintf(stdout, "egress: OK (table inet %s, %d sets, %d addresses and prefixes, rules %v)\n", rs.Table, len(rs.Sets), n, cfg.Egress.Rules)
	return nil
}

// writeIPCheck explains an address for `dnsfence check ADDR` from the configured lists (the
// running instance's learned addresses need its /api/check?ip=); false if arg is not an address.
func writeIPCheck(w io.Writer, cfg *configs.Config, arg string) (bool, error) {
	a, err := netip.ParseAddr(arg)
	if err != nil {
		return false, nil
	}
	rs, err := egressRuleset(cfg)
	if err != nil {
		return true, err
	}
	hits := egress.Explain(rs, a)
	if len(hits) == 0 {
		fmt.Fprintf(w, "%s: not in any egress set (learned addresses: ask the running instance, GET /api/check?ip=%s)\n", a, a)
		return true, nil
	}
	fmt.Fprintf(w, "%s: blocked by egress set %s\n", a, hits[0].Set)
	for _, h := range hits {
		fmt.Fprintf(w, "  %s\n", h)
	}
	return true, nil
}
