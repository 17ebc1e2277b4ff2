package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/cmd/dnsfence/admin"
	"github.com/dnsfence/dnsfence/cmd/dnsfence/internal/filewatch"
	"github.com/dnsfence/dnsfence/cmd/dnsfence/internal/heapfloor"
	"github.com/dnsfence/dnsfence/cmd/dnsfence/internal/indexchild"
	"github.com/dnsfence/dnsfence/cmd/dnsfence/internal/logging"
	"github.com/dnsfence/dnsfence/configs"
	"github.com/dnsfence/dnsfence/metrics"
	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/egress"
	"github.com/dnsfence/dnsfence/resolver/history"
	"github.com/dnsfence/dnsfence/resolver/listen"
	"github.com/dnsfence/dnsfence/resolver/report"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

// hooks let tests observe a running instance and trigger reloads without signals.
type hooks struct {
	ready func(*instance)
	// reload asks for a reload; the loop closes the given channel when it is done.
	reload <-chan chan struct{}
	// inProcessLists builds every list reload in this process, without the index child: the
	// in-process tests time their reloads against the file watcher's debounce.
	inProcessLists bool
}

// instance is a running dnsfence, as the tests see it.
type instance struct {
	dnsAddrs []string
	httpAddr string
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, h hooks) error {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintln(stdout, "dnsfence", version)
			return nil
		case "check":
			return runCheck(args[1:], stdout, stderr)
		case "apps":
			return runApps(stdout)
		case "report":
			return runReport(args[1:], stdout, stderr)
		case "egress":
			return runEgress(args[1:], stdout, stderr)
		}
	}
	opts, rest, err := parseFlags("dnsfence", args, stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "dnsfence: unexpected argument %q (see dnsfence -h)\n", rest[0])
		return errUsage
	}
	cfg, err := loadConfig(opts)
	if err != nil {
		return err
	}
	if opts.configCheck {
		return checkConfig(ctx, cfg, stdout)
	}
	logs, err := logging.New(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = logs.Main.Sync() }()
	err = serve(ctx, cfg, opts, logs, h)
	return errors.Join(err, logs.Close())
}

// loadConfig reads the config (the built-in one without -config), applies the flags and validates.
func loadConfig(o *options) (*configs.Config, error) {
	cfg, err := configs.Load(o.config)
	if err != nil {
		return nil, err
	}
	recordFlags(cfg, o)
	if len(o.listen) > 0 {
		cfg.Listen = o.listen
	}
	if len(o.upstreams) > 0 {
		cfg.Upstreams = o.upstreams
	}
	for _, p := range o.blocklists {
		cfg.Blocklists = append(cfg.Blocklists, configs.ListConfig{Name: listName(p, cfg.Blocklists), Path: p})
	}
	if o.httpSet {
		cfg.HTTP.Listen = o.http
	}
	if o.logFormat != "" {
		cfg.Log.Format = o.logFormat
	}
	if o.logLevel != "" {
		cfg.Log.Level = o.logLevel
	}
	if o.tlsCert != "" {
		cfg.TLS.Cert = o.tlsCert
	}
	if o.tlsKey != "" {
		cfg.TLS.Key = o.tlsKey
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

// listName names a -blocklist file after its base name, made unique among the configured lists.
func listName(path string, existing []configs.ListConfig) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	name := base
	for i := 2; ; i++ {
		taken := false
		for _, l := range existing {
			taken = taken || l.Name == name
		}
		if !taken {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

// loadSet loads the configured lists once, for commands that do not serve (URL lists from their
// cached copy only: these commands do not download).
func loadSet(cfg *configs.Config) (*blocklist.Set, []blocklist.ListInfo, error) {
	set, infos, err := blocklist.Load(cfg.ListSources(cfg.Fetcher("dnsfence/" + version)))
	if err != nil {
		return nil, nil, cfg.ListLoadError(err)
	}
	return set, infos, nil
}

// logInvalid warns about a list's skipped lines, with the first few as file:line examples.
func logInvalid(log *zap.Logger, l blocklist.ListInfo) {
	if l.Invalid+l.Unsupported > 0 {
		log.Warn("blocklist has lines it cannot use (skipped)", zap.String("list", l.Name),
			zap.Int("invalid", l.Invalid), zap.Int("unsupported", l.Unsupported), zap.Strings("examples", l.Examples))
	}
}

// chainParts are what the query chain is built from.
type chainParts struct {
	upstreams []upstream.Upstream
	lists     *blocklist.Live
	groups    *resolver.Groups // nil without client groups
	apps      map[string]string
	metrics   *metrics.Metrics
	report    *report.Report
	history   *history.Recorder // nil without history
	queryLog  *zap.Logger
	policyLog *zap.Logger
	onHealth  func(upstream string, healthy bool)
	observe   func(upstream string, d time.Duration, err error) // every upstream exchange
	stats     resolver.Middleware
	pause     *resolver.Pause
	upOpts    upstream.Options
	local     *resolver.LocalData
	cache     *resolver.Cache // nil: no cache
	egress    *egress.Runtime // nil: egress off
}

// buildChain builds the query path: the one place that decides the order of the stages.
func buildChain(cfg *configs.Config, p chainParts) resolver.Resolver {
	blockedNets, _ := cfg.BlockedNets()
	allowed, _ := cfg.AllowedNets()
	router := buildRouter(cfg, p)
	var ql, policy, policyLog, rateLimit resolver.Middleware
	if rl := cfg.RateLimit; rl.ClientQPS > 0 || rl.PrefixQPS > 0 {
		rateLimit = resolver.RateLimiter(resolver.RateLimit{
			ClientQPS: rl.ClientQPS, ClientBurst: rl.ClientBurst,
			PrefixQPS: rl.PrefixQPS, PrefixBurst: rl.PrefixBurst, Slip: rl.Slip,
		}, nil)
	}
	if cfg.Log.Queries {
		ql = resolver.QueryLog(p.queryLog, cfg.ClientPrivacy())
	}
	if p.groups != nil {
		policy = resolver.Policy(p.groups)
		if !cfg.Log.Queries { // the query log already has these lines
			policyLog = resolver.PolicyLog(p.policyLog)
		}
	}
	// Outermost first. Why this order:
	//   metrics:   first, so it sees every outcome (invalid, blocked, errors) and the full duration;
	//   stats:     beside metrics, for the admin API's counts, for the same reason;
	//   querylog:  next, for the same reason, and optional;
	//   access:    refuses (or drops) clients outside access.allow before any work is done for them;
	//   ratelimit: then bounds what each allowed client (and /24, /56) may ask over UDP;
	//   policylog: (with groups) what log-only groups and exemptions let through;
	//   report:    outside block, so it sees what was blocked or let through by policy;
	//   validate:  answers malformed and unsupported queries before any stage relies on the question;
	//   policy:    (with groups) finds the client's group, which block and metrics read;
	//   local:     custom records and hosts files answer before blocking (the admin's own names
	//              win), but a CNAME to an outside name is followed through block and router;
	//   block:     decides before anything is forwarded or cached, so a list reload takes effect
	//              at once; it also inspects the answers coming back (CNAME cloaking, blocked
	//              addresses), above the cache, so a blocked answer is never cached as such;
	//   cache:     just above the router: answers repeated questions, coalesces identical misses,
	//              serves stale answers when every upstream fails;
	//   router:    terminal: conditionally forwarded zones, locally-served zones (private reverse,
	//              home.arpa), and the default upstreams behind optional rebinding protection.
	return resolver.Chain(
		router,
		p.metrics.Middleware(),
		p.stats,
		ql,
		resolver.Access(allowed, cfg.Access.Action == "drop"),
		rateLimit,
		policyLog,
		p.report.Middleware(),
		p.history.Middleware(), // beside the report, for the same reason
		resolver.Validate(),
		policy,
		resolver.Local(p.local),
		p.egress.LearnStage(router), // egress learning: sees what block decides, learns blocked names' addresses
		resolver.Block(resolver.Blocker{
			Matcher: p.lists, Sinkhole: cfg.Sinkhole(""), ListSinkholes: cfg.ListSinkholes(), Apps: p.apps,
			InspectAnswers: cfg.Blocking.InspectAnswers, BlockedNets: blockedNets, Skip: router.Trusted,
			Pause: p.pause,
		}),
		p.cache.Middleware(),
	)
}

// newCache builds the response cache from the config (nil when cache.max_entries is 0).
func newCache(cfg *configs.Config, m *metrics.Metrics) *resolver.Cache {
	c := cfg.Cache
	if c.MaxEntries == 0 {
		m.CacheSize(nil)
		return nil
	}
	cache := resolver.NewCache(resolver.CacheOptions{
		MaxEntries: c.MaxEntries, MinTTL: c.MinTTL, MaxTTL: c.MaxTTL, NegativeMaxTTL: c.NegativeMaxTTL,
		ServFailTTL: c.ServFailTTL, ServeStale: c.ServeStale, StaleMaxAge: c.StaleMaxAge,
		PrefetchHits: c.PrefetchHits, FetchTimeout: cfg.QueryTimeout,
	}, resolver.CacheObserver{Hit: m.CacheHit, Miss: m.CacheMiss, Stale: m.CacheStale, Prefetch: m.CachePrefetch, Evict: m.CacheEvict})
	m.CacheSize(cache.Len)
	return cache
}

// buildRouter routes names by zone: forward_zones to their upstreams, the locally-served zones to
// private_zones.upstreams or a local NXDOMAIN (RFC 6303), the rest to the default upstreams.
func buildRouter(cfg *configs.Config, p chainParts) *resolver.Router {
	forward := func(ups []upstream.Upstream) *upstream.Forward {
		limits := make([]*resolver.Limiter, len(ups))
		for i := range limits {
			limits[i] = resolver.NewLimiter(cfg.Limits.UpstreamMaxInflight)
		}
		return &upstream.Forward{Upstreams: ups, AttemptTimeout: cfg.UpstreamTimeout, Observe: p.observe,
			Limits: limits, Health: cfg.HealthPolicy(), OnHealth: p.onHealth}
	}
	parse := func(urls []string) []upstream.Upstream {
		var ups []upstream.Upstream
		for _, u := range urls {
			up, _ := upstream.Parse(u, p.upOpts) // validated
			p.metrics.InitUpstream(up.Address())
			ups = append(ups, up)
		}
		return ups
	}
	var routes []resolver.Route
	zoned := map[string]bool{}
	for _, z := range cfg.ForwardZones {
		routes = append(routes, resolver.Route{Zone: z.Zone, Resolver: forward(parse(z.Upstreams)), Trusted: z.Trusted})
		zoned[strings.ToLower(dns.Fqdn(z.Zone))] = true
	}
	var private resolver.Resolver
	if len(cfg.PrivateZones.Upstreams) > 0 {
		private = forward(parse(cfg.PrivateZones.Upstreams))
	}
	for _, z := range resolver.LocallyServedZones() {
		if zoned[z] {
			continue
		}
		r := private
		if r == nil {
			r = resolver.LocalNXDOMAIN(z)
		}
		routes = append(routes, resolver.Route{Zone: z, Resolver: r})
	}
	var def resolver.Resolver = forward(p.upstreams)
	if cfg.Rebinding {
		def = resolver.RebindingGuard(def, nil)
	}
	return resolver.NewRouter(def, routes...)
}

// fileDebounce is how long list and config files must be quiet before a reload: editors and
// `mv` produce bursts of events, and a reload per event would parse a list several times.
const fileDebounce = 300 * time.Millisecond

// env is what outlives a config reload: logs, metrics, the report and the reload notifications.
type env struct {
	log, queryLog, policyLog *zap.Logger
	metrics                  *metrics.Metrics
	report                   *report.Report
	history                  *history.Recorder // nil: history off
	inst                     *instance
	stats                    *admin.Stats
	pauser                   *admin.Pauser
	upstreams                *admin.Liveness
	// cur is the running state, for the HTTP handlers; the serve loop stores it.
	cur     atomic.Pointer[state]
	fetcher *blocklist.Fetcher
	egress  *egress.Runtime
	// refreshed carries the results of URL list downloads to the reload loop.
	refreshed chan refreshEvent
	warned    listWarnings // skipped list lines already logged
	// childBuilt: the last list reload was built in a child process (see releaseMemory).
	childBuilt atomic.Bool
	// noChild: reloads build the lists in this process (hooks.inProcessLists).
	noChild bool
}

// refreshEvent is one background download of a URL list.
type refreshEvent struct {
	list string
	res  blocklist.FetchResult
	err  error
}

// state is everything built from one config: its lists and the query chain.
type state struct {
	cfg       *configs.Config
	lists     *blocklist.Live
	chain     resolver.Resolver
	upstreams []string
	// stop ends the state's URL list refreshes and cache prefetches; a new state starts its own.
	stop context.CancelFunc
}

// build makes a state from cfg aside from the running one; an error leaves nothing behind.
func (e *env) build(cfg *configs.Config) (*state, error) {
	m, log := e.metrics, e.log
	upstreamURLs := cfg.Upstreams
	if len(upstreamURLs) == 0 {
		var err error
		if upstreamURLs, err = configs.DefaultUpstreams(cfg.ResolvConf, cfg.Listen); err != nil {
			return nil, err
		}
	}
	upOpts, err := cfg.UpstreamOptions()
	if err != nil {
		return nil, err
	}
	upstreams := make([]upstream.Upstream, 0, len(upstreamURLs))
	for _, u := range upstreamURLs {
		up, err := upstream.Parse(u, upOpts)
		if err != nil {
			return nil, err
		}
		upstreams = append(upstreams, up)
	}
	e.download(cfg, func(l configs.ListConfig) bool { _, ok := e.fetcher.Cached(l.Name, l.URL); return !ok })
	onReload := func(r blocklist.Result) {
		now := time.Now()
		m.ListsRebuilt(r.Child)
		e.childBuilt.Store(r.Child)
		built := builtIn(r.Child)
		for _, l := range r.Lists {
			m.ListLoaded(l.Name, l.Entries, l.Invalid, r.Failed[l.Name], now)
			m.ListRules(l.Name, l.RulesByKind())
			e.warned.log(log, l, r.Failed[l.Name] != nil)
		}
		if err := r.Err(); err != nil {
			log.Error("blocklist reload failed; the failing lists keep their last good entries",
				zap.Error(err), zap.Int("entries", r.Entries), built)
		} else {
			log.Info("blocklists reloaded", zap.Int("entries", r.Entries), zap.Duration("took", r.Duration), built)
			warnChildErr(log, r)
		}
	}
	// The compiled lists are kept in the cache directory: a restart with the same lists maps them.
	// A reload builds them in a child process at idle priority (see indexchild).
	// So does a config reload that changed them (another set serves meanwhile).
	lo := blocklist.LiveOptions{IndexDir: cfg.CacheDir(), OnIndexError: func(err error) { log.Warn("blocklist index", zap.Error(err)) },
		Aside: e.cur.Load() != nil}
	if !e.noChild {
		lo.BuildIndex = indexchild.Builder{Builtin: configs.Lists(), Done: func(took time.Duration, rss int64) {
			log.Info("blocklist index child exited", zap.Duration("took", took), zap.String("peak_rss", sizeString(int(rss))))
		}}.Build
	}
	lists, err := blocklist.NewLiveWith(cfg.ListSources(e.fetcher), onReload, lo)
	if err != nil {
		return nil, fmt.Errorf("blocklists: %w", err)
	}
	if init := lists.Initial(); lo.Aside && !init.Indexed {
		m.ListsRebuilt(init.Child)
		log.Info("blocklists built for the new config", zap.Int("entries", init.Entries), zap.Duration("took", init.Duration), builtIn(init.Child))
		warnChildErr(log, init)
	}
	pending := lists.Initial().Failed
	apps := cfg.ListApps()
	groups, err := cfg.ClientGroups(lists, func(group string, e resolver.Exemption) {
		log.Info("exemption active", zap.String("group", group), zap.String("app", e.App),
			zap.String("list", e.List), zap.Time("until", e.Until), zap.String("reason", e.Reason))
	})
	if err != nil {
		return nil, err
	}
	local, err := cfg.LocalData()
	if err != nil {
		return nil, err
	}
	for _, u := range upstreams {
		m.InitUpstream(u.Address())
	}
	for _, l := range lists.Set().Lists() {
		m.InitList(l.Name, apps[l.Name], cfg.GroupNames())
		m.ListLoaded(l.Name, l.Entries, l.Invalid, pending[l.Name], time.Now())
		m.ListRules(l.Name, l.RulesByKind())
		e.warned.log(log, l, pending[l.Name] != nil)
		if err := pending[l.Name]; err != nil {
			log.Warn("URL list unreachable and not cached: starting without it; retrying in the background", zap.String("list", l.Name), zap.Error(err))
		}
	}
	for _, l := range cfg.URLLists() {
		m.ListInterval(l.Name, l.RefreshInterval())
	}
	m.InitQueries(cfg.GroupNames(), cfg.ListenTransports(), cfg.BlockedRcode())
	cache := newCache(cfg, m)
	chain := buildChain(cfg, chainParts{
		upstreams: upstreams, lists: lists, groups: groups, apps: apps, cache: cache,
		metrics: m, report: e.report, history: e.history, queryLog: e.queryLog, policyLog: e.policyLog, upOpts: upOpts, local: local,
		stats: e.stats.Middleware(), pause: e.pauser.Pause(), egress: e.egress,
		observe: func(upstream string, d time.Duration, err error) {
			m.ObserveUpstream(upstream, d, err)
			e.upstreams.Observe(err)
		},
		onHealth: func(upstream string, healthy bool) {
			m.UpstreamHealthy(upstream, healthy)
			if healthy {
				log.Info("upstream back in rotation", zap.String("upstream", upstream))
			} else {
				log.Warn("upstream keeps failing; out of rotation until a probe succeeds", zap.String("upstream", upstream))
			}
		},
	})
	stop := func() {}
	if cache != nil {
		stop = cache.Close // a replaced state's cache stops its prefetches
	}
	return &state{cfg: cfg, lists: lists, chain: chain, upstreams: upstreamURLs, stop: stop}, nil
}

// download fetches the URL lists that need it (e.g. those without a cached copy) concurrently,
// each bounded by downloads.timeout per attempt; failures are logged, returned by list name and
// left to the refresh loop to retry.
func (e *env) download(cfg *configs.Config, need func(configs.ListConfig) bool) map[string]error {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed = map[string]error{}
	)
	for _, l := range cfg.URLLists() {
		if !need(l) {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*cfg.Downloads.Timeout)
			defer cancel()
			res, err := e.fetcher.Fetch(ctx, l.Name, l.URL)
			if err != nil {
				e.log.Warn("URL list download failed", zap.String("list", l.Name), zap.String("url", l.URL),
					zap.Bool("cached_copy", res.FromCache), zap.Error(err))
				mu.Lock()
				failed[l.Name] = err
				mu.Unlock()
				return
			}
			e.log.Info("URL list downloaded", zap.String("list", l.Name), zap.Bool("changed", res.Changed), zap.Int64("bytes", res.Bytes))
		})
	}
	wg.Wait()
	return failed
}

// Refresh starts the background downloads of a state's URL lists: at once for a list served from
// an older cached copy, then every refresh interval; a list with no copy yet is retried sooner,
// with backoff. Results go to the reload loop, so reloads stay single-threaded.
func (e *env) Refresh(st *state) {
	ctx, cancel := context.WithCancel(context.Background())
	closeRest := st.stop
	st.stop = func() { cancel(); closeRest() }
	report := func(name string) func(blocklist.FetchResult, error) {
		return func(res blocklist.FetchResult, err error) {
			select {
			case e.refreshed <- refreshEvent{list: name, res: res, err: err}:
			case <-ctx.Done():
			}
		}
	}
	for _, l := range st.cfg.URLLists() {
		go func() {
			done := report(l.Name)
			_, have := e.fetcher.Cached(l.Name, l.URL)
			for delay := 30 * time.Second; !have; delay = min(2*delay, l.RefreshInterval()) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(delay):
				}
				res, err := e.fetcher.Fetch(ctx, l.Name, l.URL)
				if ctx.Err() != nil {
					return
				}
				done(res, err)
				have = err == nil
			}
			e.fetcher.Refresh(ctx, l.Name, l.URL, l.RefreshInterval(), done)
		}()
	}
}

// refreshed handles one background download: new content reloads the lists; an unchanged list
// counts as a successful refresh; a failure is logged and counted, and the last good copy serves on.
func (e *env) onRefreshed(cur *state, ev refreshEvent) {
	info, ok := listInfo(cur.lists, ev.list)
	if !ok {
		return // a list of a config since replaced
	}
	switch {
	case ev.err != nil:
		e.log.Error("URL list refresh failed; serving the last good copy", zap.String("list", ev.list),
			zap.Bool("cached_copy", ev.res.FromCache), zap.Error(ev.err))
		e.metrics.ListLoaded(ev.list, info.Entries, info.Invalid, ev.err, time.Now())
	case ev.res.Changed:
		e.log.Info("URL list changed; reloading", zap.String("list", ev.list), zap.Int64("bytes", ev.res.Bytes))
		cur.lists.Reload()
		e.releaseMemory()
	default:
		e.metrics.ListLoaded(ev.list, info.Entries, info.Invalid, nil, time.Now())
	}
}

func listInfo(l *blocklist.Live, name string) (blocklist.ListInfo, bool) {
	for _, li := range l.Set().Lists() {
		if li.Name == name {
			return li, true
		}
	}
	return blocklist.ListInfo{}, false
}

// reload re-reads the config file (with the same flags on top). Unchanged: the lists are reloaded.
// Changed and valid: a whole new state is built aside and swapped in. Invalid, or failing to
// build: the running state stays, every problem is logged with its line, and it is counted.
// The result says what was done (for the admin API); the error, why a config was refused.
//
// With download (SIGHUP, the admin API; not file changes), URL lists are downloaded first
// (conditional requests, so an unchanged list costs one round trip).
func (e *env) reload(cur *state, o *options, chain *resolver.Swappable, download bool) (*state, admin.Reloaded, error) {
	var failed map[string]error
	if download {
		failed = e.download(cur.cfg, func(configs.ListConfig) bool { return true })
	}
	reloadLists := func() blocklist.Result {
		res := cur.lists.Reload()
		for name, err := range failed { // counted after the reload, which counts the re-read as a success
			if info, ok := listInfo(cur.lists, name); ok {
				e.metrics.ListLoaded(name, info.Entries, info.Invalid, err, time.Now())
			}
		}
		return res
	}
	if o.config == "" {
		// The built-in config cannot change.
		return cur, admin.ListsReloaded("built-in", reloadLists()), nil
	}
	cfg, err := loadConfig(o)
	if err == nil && cur.cfg.Equal(cfg) {
		e.metrics.ConfigValid() // the file may have been fixed back to the running config
		return cur, admin.ListsReloaded("unchanged", reloadLists()), nil
	}
	var next *state
	if err == nil {
		next, err = e.build(cfg)
	}
	if err != nil {
		e.log.Error("config reload refused; the running config stays", zap.String("config", o.config), zap.Error(err))
		e.metrics.ConfigLoaded(false, time.Now())
		// List edits keep applying under the running config while the file is being fixed.
		reloadLists() // logged and counted by the lists' onReload
		return cur, admin.Reloaded{}, fmt.Errorf("config reload refused; the running config stays: %w", err)
	}
	if changed := configs.RestartNeeded(cur.cfg, cfg); len(changed) > 0 {
		e.log.Warn("config changes that need a restart to apply", zap.Strings("settings", changed))
	}
	chain.Store(next.chain)
	if next.lists.Initial().Child {
		// As after a list reload built by the child: no garbage to collect here, and the old
		// index's pages leave now (see releaseMemory).
		cur.lists.DropPages()
		e.childBuilt.Store(true)
	}
	cur.stop()
	e.Refresh(next)
	e.metrics.ConfigLoaded(true, time.Now())
	e.log.Info("config reloaded", zap.String("config", o.config), zap.Int("blocked_names", next.lists.Set().Len()))
	return next, admin.ListsReloaded("reloaded", blocklist.Result{Lists: next.lists.Set().Lists(), Entries: next.lists.Set().Len()}), nil
}

// sizeString formats a byte count for people.
func sizeString(n int) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// builtIn is the log field that says where a list load was built.
func builtIn(child bool) zap.Field {
	if child {
		return zap.String("built_in", "child")
	}
	return zap.String("built_in", "server")
}

// warnChildErr logs why the index child was asked but a load was built in the server.
func warnChildErr(log *zap.Logger, r blocklist.Result) {
	if r.ChildErr != nil {
		log.Warn("blocklist index: the child process did not build it; built in the server", zap.Error(r.ChildErr))
	}
}

// releaseMemory collects a replaced list set at once, so that its table is unmapped (a cleanup
// does it once the set is unreachable) and the parsing garbage returns to the OS: on a router a
// reload of a big list would otherwise look like a leak until the next collection. It costs one
// garbage collection per load. When the last reload was built in a child process there is no
// parsing garbage (this heap did not grow), and nothing is forced: Reload already took the old
// index's pages out of the process (they are a file's), and the next collection unmaps it
// (within two minutes on an idle server, a second or two under load). A forced collection there
// stalled the answers of a one-core server for 15-28 ms at 5,000 qps, each reload, where the
// reload without it stayed under 8 ms (scratch runs with dnsperf -v, answers by 100 ms).
func (e *env) releaseMemory() {
	if e.childBuilt.Swap(false) {
		return
	}
	debug.FreeOSMemory()
}

// serve runs the DNS and HTTP listeners until ctx is done.
func serve(ctx context.Context, cfg *configs.Config, o *options, logs logging.Loggers, h hooks) error {
	log := logs.Main
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return err
	}
	m, err := metrics.New(reg, version)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer heapfloor.Start(cfg.Limits.HeapFloorMB)()
	inst := &instance{}
	e := &env{log: log, queryLog: logs.Queries, policyLog: logs.Policy, metrics: m, report: report.New(configs.AppIDs(), maxReportClients), inst: inst,
		stats: admin.NewStats(), pauser: admin.NewPauser(m, log), upstreams: &admin.Liveness{Now: time.Now},
		fetcher: cfg.Fetcher("dnsfence/" + version), refreshed: make(chan refreshEvent, 16), noChild: h.inProcessLists}
	defer e.pauser.Stop()
	if e.egress, err = startEgress(cfg, reg, log); err != nil {
		return err
	}
	defer e.egress.Close()
	if e.history, err = startHistory(cfg, log, reg); err != nil {
		return err
	}
	defer closeHistory(e.history, cfg.ShutdownTimeout, log)
	cur, err := e.build(cfg)
	if err != nil {
		return err
	}
	e.cur.Store(cur)
	e.releaseMemory()
	e.Refresh(cur)
	defer func() { cur.stop() }()
	m.ConfigLoaded(true, time.Now())
	rep := e.report
	lists, upstreamURLs := cur.lists, cur.upstreams
	chain := resolver.NewSwappable(cur.chain)
	handler := &resolver.Handler{
		Resolver: chain, Timeout: cfg.QueryTimeout, Logger: log, OnPanic: m.Panic,
		InFlight: resolver.NewLimiter(cfg.Limits.MaxInflight), OnOverload: m.Overload,
	}

	var servers []*listen.Server
	shutdownDNS := func(ctx context.Context) error {
		var errs []error
		for _, s := range servers {
			errs = append(errs, s.Shutdown(ctx))
		}
		return errors.Join(errs...)
	}
	var certs *listen.CertReloader
	if cfg.TLS.Cert != "" {
		if certs, err = listen.NewCertReloader(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return err
		}
		certs.OnError = func(err error) {
			log.Error("new TLS certificate files do not load; still serving the previous certificate", zap.Error(err))
		}
	}
	sopts := listen.Options{
		TCPIdleTimeout: cfg.TCPIdleTimeout,
		MaxTCPQueries:  cfg.Limits.MaxTCPQueries,
		MaxTCPConns:    cfg.Limits.MaxTCPConnections,
		OnInvalid:      m.InvalidPacket,
	}
	if cfg.Limits.UDPBlockingReads {
		defer reserveReaders(&sopts, cfg.Listen)() // on return, after shutdownDNS below
	}
	for _, l := range cfg.Listen {
		ls, _ := configs.ParseListen(l) // validated
		var s *listen.Server
		switch ls.Transport {
		case resolver.DoT:
			s, err = listen.DoT(ls.Addr.String(), handler, certs, sopts)
		case resolver.DoH:
			s, err = listen.DoH(ls.Addr.String(), ls.Path, handler, certs, sopts)
		default:
			s, err = listen.Plain(ls.Addr.String(), handler, sopts)
		}
		if err != nil {
			_ = shutdownDNS(context.Background())
			return fmt.Errorf("listen %s: %w%s", l, err, bindHint(ls.Addr.String(), err))
		}
		servers = append(servers, s)
		addr := s.Addr()
		switch ls.Transport {
		case resolver.DoT:
			addr = "tls://" + addr
		case resolver.DoH:
			addr = "https://" + addr + ls.Path
		}
		inst.dnsAddrs = append(inst.dnsAddrs, addr)
	}

	// The admin API's reloads go through the serve loop below, like SIGHUP's.
	apiReload := make(chan chan<- reloadReply)
	loopDone := make(chan struct{}) // closed when the loop stops taking requests
	askReload := func(ctx context.Context) (admin.Reloaded, error) {
		reply := make(chan reloadReply, 1)
		select {
		case apiReload <- reply:
		case <-loopDone:
			return admin.Reloaded{}, admin.ErrShuttingDown
		case <-ctx.Done():
			return admin.Reloaded{}, ctx.Err()
		}
		select {
		case r := <-reply:
			return r.res, r.err
		case <-ctx.Done():
			return admin.Reloaded{}, ctx.Err()
		}
	}

	var httpSrv *http.Server
	httpErr := make(chan error, 1)
	if cfg.HTTP.Listen != "" {
		token, err := cfg.HTTPToken()
		if err != nil { // validated, but the file may have changed since
			_ = shutdownDNS(context.Background())
			return fmt.Errorf("http.token_file: %w", err)
		}
		ln, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			_ = shutdownDNS(context.Background())
			return fmt.Errorf("http listen: %w%s", err, bindHint(cfg.HTTP.Listen, err))
		}
		inst.httpAddr = ln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler(reg))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "ok")
		})
		mux.Handle("GET /readyz", admin.Ready(func() bool { return e.cur.Load().lists.Set() != nil }, e.upstreams, e.egress.Ready))
		if cfg.HTTP.API || cfg.HTTP.PProf {
			api := admin.New(token, e.stats, e.pauser, askReload, explainLists(e.cur.Load))
			if e.egress != nil {
				api.ExplainIPs(explainEgress(e.egress))
			}
			if cfg.HTTP.API {
				mux.Handle("/api/", api)
				mux.Handle("GET /report", api.RequireToken(admin.History(e.history, e.curDeviceNames, admin.Report(rep), "text")))
				mux.Handle("GET /api/history", api.RequireToken(admin.History(e.history, e.curDeviceNames, nil, "json")))
			}
			if cfg.HTTP.PProf {
				mux.Handle("/debug/pprof/", api.RequireToken(admin.PProf()))
			}
		}
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { httpErr <- httpSrv.Serve(ln) }()
	}

	listFields := []zap.Field{}
	for _, l := range lists.Set().Lists() {
		listFields = append(listFields, zap.Int(l.Name, l.Entries))
	}
	if exposed := cfg.ExposedListeners(); len(exposed) > 0 {
		log.Warn("OPEN RESOLVER: listening on a public or wildcard address while access.allow admits every client; "+
			"anyone on the internet can use this server for DNS amplification attacks. Restrict access.allow.",
			zap.Strings("listen", exposed))
	}
	log.Info("dnsfence started",
		zap.String("version", version),
		zap.Strings("listen", inst.dnsAddrs),
		zap.Strings("upstreams", upstreamURLs),
		zap.String("http", inst.httpAddr),
		zap.String("blocking", cfg.Blocking.Mode),
		zap.Dict("blocklists", listFields...),
		zap.Int("blocked_names", lists.Set().Len()),
		zap.String("list_memory", sizeString(lists.Set().Bytes())),
	)

	// One goroutine (this one) does every reload: SIGHUP, file changes and test triggers feed it,
	// so reloads never race.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var changed <-chan struct{}
	stopWatch := func() {}
	watch := func() {
		stopWatch()
		wctx, cancel := context.WithCancel(ctx)
		stopWatch = cancel
		paths := cur.cfg.WatchedPaths(o.config)
		if filewatch.InWatchedDir(cur.cfg.Log.QueryFile, paths) {
			log.Warn("log.query_file is in a directory watched for config and list changes: every query logged "+
				"wakes the watcher; put the query log in another directory", zap.String("query_file", cur.cfg.Log.QueryFile))
		}
		if c, err := filewatch.Watch(wctx, paths, fileDebounce, log); err != nil {
			log.Warn("cannot watch files; use SIGHUP to reload", zap.Error(err))
			changed = nil
		} else {
			changed = c
		}
	}
	watch()
	defer func() { stopWatch() }()
	// Ready only once the watches are in place: a file replaced earlier would be missed.
	if h.ready != nil {
		h.ready(inst)
	}
	reload := func(download bool) (admin.Reloaded, error) {
		next, res, err := e.reload(cur, o, chain, download)
		ep := egressPlan(next.cfg)
		if download {
			e.egress.Download(ep)
		}
		e.egress.Update(ep)
		if next != cur {
			cur = next
			e.cur.Store(cur)
			watch() // the new config may name other files
		}
		e.releaseMemory()
		return res, err
	}
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			log.Info("SIGHUP: reloading the config and blocklists")
			_, _ = reload(true)
		case <-changed:
			log.Info("files changed: reloading the config and blocklists")
			_, _ = reload(false)
		case done := <-h.reload:
			_, _ = reload(true)
			close(done)
		case reply := <-apiReload:
			log.Info("admin API: reloading the config and blocklists")
			res, err := reload(true)
			reply <- reloadReply{res, err}
		case ev := <-e.refreshed:
			e.onRefreshed(cur, ev)
		case err := <-httpErr:
			runErr = fmt.Errorf("http server: %w", err)
			break loop
		}
	}

	close(loopDone)
	log.Info("shutting down", zap.Duration("drain_timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	errs := []error{runErr, shutdownDNS(sctx)}
	if httpSrv != nil {
		errs = append(errs, httpSrv.Shutdown(sctx))
	}
	return errors.Join(errs...)
}

// reloadReply carries a reload's result from the serve loop to the admin API.
type reloadReply struct {
	res admin.Reloaded
	err error
}

// explainLists answers /api/check from the running lists (every list: client groups do not apply).
func explainLists(cur func() *state) func(string) (any, error) {
	return func(name string) (any, error) {
		st := cur()
		return admin.Explain(st.lists.Explain(name), st.cfg.ListApps()), nil
	}
}

// reserveReaders turns on the UDP listeners' blocking reads and gives each of their sockets a P
// of its own (see listen.Options.BlockingReads): a socket per CPU the runtime uses on every plain
// listen address, and GOMAXPROCS raised by their number. It must run before the listeners start:
// with one P, a waiting reader would leave none for anything else. The returned function gives
// the Ps back once the listeners have stopped; it subtracts rather than restores, so that
// instances started in one process (the tests) do not undo each other's reservations.
func reserveReaders(opts *listen.Options, addrs []string) (release func()) {
	plain := 0
	for _, l := range addrs {
		if ls, err := configs.ParseListen(l); err == nil && ls.Transport == resolver.UDP {
			plain++
		}
	}
	if plain == 0 || !listen.BlockingReadsSupported {
		return func() {}
	}
	opts.UDPSockets, opts.BlockingReads = min(runtime.NumCPU(), runtime.GOMAXPROCS(0)), true
	extra := plain * opts.UDPSockets
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + extra)
	return func() { runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)-extra)) }
}
