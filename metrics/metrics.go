// Package metrics exports dnsfence's Prometheus metrics. Everything is registered on the registerer
// passed to New (never the global one) and every label has a bounded set of values: no query names,
// no client addresses.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

const namespace = "dnsfence"

// Metrics holds dnsfence's collectors.
type Metrics struct {
	queries          *prometheus.CounterVec
	queryDuration    *prometheus.HistogramVec
	blocked          *prometheus.CounterVec
	allowed          *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	upstreamErrors   *prometheus.CounterVec
	upstreamHealthy  *prometheus.GaugeVec
	invalid          prometheus.Counter
	panics           prometheus.Counter
	overload         prometheus.Counter
	listEntries      *prometheus.GaugeVec
	listReloads      *prometheus.CounterVec
	listBuilds       *prometheus.CounterVec
	listLastSuccess  *prometheus.GaugeVec
	listInvalid      *prometheus.GaugeVec
	listLastOK       *prometheus.GaugeVec
	configReloads    *prometheus.CounterVec
	configLastOK     prometheus.Gauge
	configLastResult prometheus.Gauge
	listInterval     *prometheus.GaugeVec
	listRules        *prometheus.GaugeVec
	upstreamLastOK   *prometheus.GaugeVec
	cacheHits        prometheus.Counter
	cacheMisses      prometheus.Counter
	cacheStale       prometheus.Counter
	cachePrefetches  prometheus.Counter
	cacheEvictions   prometheus.Counter
	cacheEntries     prometheus.GaugeFunc
	cacheSize        atomic.Pointer[func() int]
	paused           prometheus.Gauge

	// durations by outcome, looked up once so the hot path does no label hashing for them.
	durationByOutcome []prometheus.Observer
	// The series of queries_total and blocked_queries_total met so far, per group (the
	// default one without a lookup): WithLabelValues validates and hashes every label string
	// and takes the vector's lock, per query. Keys are bounded like the labels.
	defaultGroup groupSeries
	groups       sync.Map // group name -> *groupSeries
	// Per upstream name, the series every forwarded query updates (*upstreamSeries).
	upstreams sync.Map
}

type upstreamSeries struct {
	duration prometheus.Observer
	lastOK   prometheus.Gauge
}

type groupSeries struct {
	queries sync.Map // queryKey -> prometheus.Counter
	blocked sync.Map // list name -> *listCounter
}

// listCounter is a list's blocked_queries_total series in one group. A list is filed under one
// app, so app only confirms the cached series is the right one.
type listCounter struct {
	app string
	c   prometheus.Counter
}

// queryKey packs the qtype, rcode, outcome and transport labels of a queries_total series into
// an integer, which sync.Map hashes much faster than a struct; qtype and rcode are first mapped
// to their bounded label sets (qtypeKey, rcodeKey).
func queryKey(qtype uint16, rcode int, o resolver.Outcome, t resolver.Transport) uint64 {
	return uint64(qtype)<<32 | uint64(uint16(rcode))<<16 | uint64(o)<<8 | uint64(t)
}

// New creates the metrics and registers them on reg. version is exported in dnsfence_build_info.
func New(reg prometheus.Registerer, version string) (*Metrics, error) {
	m := &Metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "queries_total",
			Help: "Queries answered, by query type, response code, outcome, transport (udp, tcp, tls, https) and client group.",
		}, []string{"qtype", "rcode", "outcome", "transport", "group"}),
		queryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "query_duration_seconds",
			Help:    "Time from receiving a query to having its reply, by outcome.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"outcome"}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "blocked_queries_total",
			Help: "Queries sinkholed, by the blocklist that matched, the curated app it is filed under (other for none) and the client group.",
		}, []string{"list", "app", "group"}),
		allowed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "policy_allowed_queries_total",
			Help: "Queries that matched a blocklist but were answered normally, by list, app, client group and reason (log-only, exempt, paused).",
		}, []string{"list", "app", "group", "reason"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "request_duration_seconds",
			Help:    "Duration of exchanges with an upstream resolver, failed ones included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"upstream"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "errors_total",
			Help: "Failed exchanges with an upstream resolver, by reason (timeout, network, mismatch, busy, servfail, refused, formerr, canceled, other).",
		}, []string{"upstream", "reason"}),
		upstreamHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "healthy",
			Help: "1 while an upstream is in rotation, 0 while it is skipped after repeated failures.",
		}, []string{"upstream"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "invalid_packets_total",
			Help: "Packets that could not be parsed as DNS messages.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "panics_total",
			Help: "Panics recovered while answering a query (each answered SERVFAIL).",
		}),
		overload: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "overload_dropped_queries_total",
			Help: "Queries dropped unanswered because limits.max_inflight queries were already being answered.",
		}),
		listEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "blocklist", Name: "entries",
			Help: "Entries served from each blocklist.",
		}, []string{"list"}),
		listReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "blocklist", Name: "reloads_total",
			Help: "Blocklist loads, by list and result (success, failure; a failure keeps the last good entries).",
		}, []string{"list", "result"}),
		listBuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "blocklist", Name: "reload_builds_total",
			Help: "Blocklist reloads by where the new set was built: child (a child process at idle priority) or process (in the server, paced).",
		}, []string{"where"}),
		listLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "blocklist", Name: "last_success_timestamp_seconds",
			Help: "Unix time of the last successful load of each blocklist.",
		}, []string{"list"}),
		listInvalid: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "blocklist", Name: "invalid_lines",
			Help: "Lines of each blocklist skipped as invalid at its last successful load.",
		}, []string{"list"}),
		listLastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "blocklist", Name: "last_reload_success",
			Help: "1 if the last load of each blocklist succeeded, 0 if it failed (the list then serves its last good entries).",
		}, []string{"list"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "config", Name: "reloads_total",
			Help: "Config file reloads, by result (success, failure: the running config stays).",
		}, []string{"result"}),
		configLastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "Unix time the running config was loaded.",
		}),
		configLastResult: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "config", Name: "last_reload_success",
			Help: "1 if the last config load or reload succeeded, 0 if it was refused (the last good config runs; lists still reload under it).",
		}),
		listInterval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "blocklist", Name: "refresh_interval_seconds",
			Help: "How often each URL blocklist is downloaded again (absent for file lists, which reload on change).",
		}, []string{"list"}),
		listRules: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "blocklist", Name: "rules",
			Help: "Rules served from each blocklist, by kind (block, block-below, allow, allow-below, regexp, allow-regexp).",
		}, []string{"list", "kind"}),
		upstreamLastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "last_success_timestamp_seconds",
			Help: "Unix time of the last successful exchange with each upstream (0 until the first).",
		}, []string{"upstream"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cache", Name: "hits_total",
			Help: "Queries answered from the response cache (fresh entries; stale ones are counted in stale_served_total).",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cache", Name: "misses_total",
			Help: "Queries the response cache could not answer, so they were forwarded.",
		}),
		cacheStale: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cache", Name: "stale_served_total",
			Help: "Expired answers served because every upstream failed (RFC 8767 serve-stale).",
		}),
		cachePrefetches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cache", Name: "prefetches_total",
			Help: "Popular entries refreshed from upstream shortly before they expired.",
		}),
		cacheEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cache", Name: "evictions_total",
			Help: "Entries removed from the response cache to stay within its size bound.",
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "blocking", Name: "paused",
			Help: "1 while blocking is paused through the admin API (every query is answered normally), else 0.",
		}),
	}
	m.cacheEntries = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "cache", Name: "entries",
		Help: "Entries in the response cache.",
	}, func() float64 {
		if f := m.cacheSize.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; labels say which build is running.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)

	for _, o := range resolver.Outcomes() {
		m.durationByOutcome = append(m.durationByOutcome, m.queryDuration.WithLabelValues(o.String()))
	}
	m.listBuilds.WithLabelValues("child") // both from the start, so increase() sees the first
	m.listBuilds.WithLabelValues("process")
	var errs []error
	for _, c := range []prometheus.Collector{
		m.queries, m.queryDuration, m.blocked, m.allowed, m.upstreamDuration, m.upstreamErrors, m.upstreamHealthy,
		m.invalid, m.panics, m.overload, m.listEntries, m.listReloads, m.listBuilds, m.listLastSuccess, m.listInvalid, m.listLastOK, m.configReloads, m.configLastOK, m.configLastResult, buildInfo,
		m.listInterval, m.listRules, m.upstreamLastOK, m.cacheHits, m.cacheMisses, m.cacheStale, m.cachePrefetches,
		m.cacheEvictions, m.cacheEntries, m.paused,
	} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Middleware is the outermost stage of the chain: it sees every reply and how long it took.
func (m *Metrics) Middleware() resolver.Middleware {
	return func(next resolver.Resolver) resolver.Resolver {
		return resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
			resp, err := next.Resolve(ctx, req)
			outcome, rcode := resolver.OutcomeError, dns.RcodeServerFailure
			if err == nil && resp != nil && resp.Msg != nil {
				outcome, rcode = resp.Outcome, resp.Msg.Rcode
			}
			group := "default"
			if req.Group != nil && req.Group.Name != "" {
				group = req.Group.Name
			}
			gs := m.groupSeries(group)
			m.queryCounter(gs, qtypeKey(req.Question().Qtype), rcodeKey(rcode), outcome, req.Transport, group).Inc()
			if int(outcome) < len(m.durationByOutcome) {
				m.durationByOutcome[outcome].Observe(time.Since(req.Received).Seconds())
			}
			if outcome == resolver.OutcomeBlocked || err == nil && resp.Allowed != resolver.NotAllowed {
				app, group := resp.App, resp.Group
				if app == "" {
					app = "other"
				}
				if group == "" {
					group = "default"
				}
				if outcome == resolver.OutcomeBlocked {
					m.blockedCounter(m.groupSeries(group), resp.List, app, group).Inc()
				} else {
					m.allowed.WithLabelValues(resp.List, app, group, resp.Allowed.String()).Inc()
				}
			}
			return resp, err
		})
	}
}

func (m *Metrics) groupSeries(group string) *groupSeries {
	if group == "default" {
		return &m.defaultGroup
	}
	if gs, ok := m.groups.Load(group); ok {
		return gs.(*groupSeries)
	}
	gs, _ := m.groups.LoadOrStore(group, new(groupSeries))
	return gs.(*groupSeries)
}

func (m *Metrics) queryCounter(gs *groupSeries, qtype uint16, rcode int, o resolver.Outcome, t resolver.Transport, group string) prometheus.Counter {
	k := queryKey(qtype, rcode, o, t)
	if c, ok := gs.queries.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := m.queries.WithLabelValues(qtypeLabel(qtype), rcodeLabel(rcode), o.String(), t.String(), group)
	gs.queries.Store(k, c)
	return c
}

func (m *Metrics) blockedCounter(gs *groupSeries, list, app, group string) prometheus.Counter {
	if v, ok := gs.blocked.Load(list); ok {
		if lc := v.(*listCounter); lc.app == app {
			return lc.c
		}
	}
	c := m.blocked.WithLabelValues(list, app, group)
	gs.blocked.Store(list, &listCounter{app: app, c: c})
	return c
}

// ObserveUpstream records one exchange with an upstream; it fits upstream.Forward.Observe.
func (m *Metrics) ObserveUpstream(name string, d time.Duration, err error) {
	us := m.upstreamSeries(name)
	us.duration.Observe(d.Seconds())
	if err != nil {
		m.upstreamErrors.WithLabelValues(name, upstream.ErrorReason(err)).Inc()
		return
	}
	us.lastOK.SetToCurrentTime()
}

// upstreamSeries returns name's series, looked up once: upstreams are the configured few.
func (m *Metrics) upstreamSeries(name string) *upstreamSeries {
	if v, ok := m.upstreams.Load(name); ok {
		return v.(*upstreamSeries)
	}
	us := &upstreamSeries{duration: m.upstreamDuration.WithLabelValues(name), lastOK: m.upstreamLastOK.WithLabelValues(name)}
	v, _ := m.upstreams.LoadOrStore(name, us)
	return v.(*upstreamSeries)
}

// InitUpstream creates an upstream's series (duration, health, errors by reason, last success)
// so dashboards and alerts see them before its first query.
func (m *Metrics) InitUpstream(upstream string) {
	m.upstreamDuration.WithLabelValues(upstream)
	m.upstreamHealthy.WithLabelValues(upstream).Set(1)
	m.upstreamLastOK.WithLabelValues(upstream) // 0 until the first success
	for _, r := range UpstreamErrorReasons() {
		m.upstreamErrors.WithLabelValues(upstream, r)
	}
}

// UpstreamHealthy records an upstream leaving (false) or rejoining (true) the rotation.
func (m *Metrics) UpstreamHealthy(upstream string, healthy bool) {
	v := 0.0
	if healthy {
		v = 1
	}
	m.upstreamHealthy.WithLabelValues(upstream).Set(v)
}

// ListLoaded records the result of loading one blocklist at time at: the entries now served, the
// lines skipped as invalid, and err if the load failed (the list then keeps its last good entries).
func (m *Metrics) ListLoaded(list string, entries, invalid int, err error, at time.Time) {
	m.listEntries.WithLabelValues(list).Set(float64(entries))
	if err != nil {
		m.listReloads.WithLabelValues(list, "failure").Inc()
		m.listLastOK.WithLabelValues(list).Set(0)
		return
	}
	m.listReloads.WithLabelValues(list, "success").Inc()
	m.listLastOK.WithLabelValues(list).Set(1)
	m.listInvalid.WithLabelValues(list).Set(float64(invalid))
	m.listLastSuccess.WithLabelValues(list).Set(float64(at.Unix()))
}

// ListsRebuilt counts one reload of the lists by where the new set was built: in a child process
// (child true) or in the server.
func (m *Metrics) ListsRebuilt(child bool) {
	where := "process"
	if child {
		where = "child"
	}
	m.listBuilds.WithLabelValues(where).Inc()
}

// InitList creates a list's blocked counters for each group (app "" is filed as other) so a list
// that never matched still shows 0 and dashboards can list it.
func (m *Metrics) InitList(list, app string, groups []string) {
	if app == "" {
		app = "other"
	}
	// Both results from the start, so increase() sees a list's first failure.
	m.listReloads.WithLabelValues(list, "failure")
	m.listReloads.WithLabelValues(list, "success")
	for _, g := range groups {
		m.blocked.WithLabelValues(list, app, g)
	}
}

// ConfigLoaded records a config load or reload at time at (ok false: refused, old config kept).
func (m *Metrics) ConfigLoaded(ok bool, at time.Time) {
	if !ok {
		m.configReloads.WithLabelValues("failure").Inc()
		m.configLastResult.Set(0)
		return
	}
	m.configReloads.WithLabelValues("failure") // from the start, so increase() sees the first
	m.configReloads.WithLabelValues("success").Inc()
	m.configLastResult.Set(1)
	m.configLastOK.Set(float64(at.Unix()))
}

// ListInterval records how often a URL list is refreshed, for alerts on stale lists.
func (m *Metrics) ListInterval(list string, d time.Duration) {
	m.listInterval.WithLabelValues(list).Set(d.Seconds())
}

// ListRules records how many rules of each kind a list serves.
func (m *Metrics) ListRules(list string, byKind map[string]int) {
	for kind, n := range byKind {
		m.listRules.WithLabelValues(list, kind).Set(float64(n))
	}
}

// Cache event counters; they fit the cache's observer callbacks.
func (m *Metrics) CacheHit()      { m.cacheHits.Inc() }
func (m *Metrics) CacheMiss()     { m.cacheMisses.Inc() }
func (m *Metrics) CacheStale()    { m.cacheStale.Inc() }
func (m *Metrics) CachePrefetch() { m.cachePrefetches.Inc() }
func (m *Metrics) CacheEvict()    { m.cacheEvictions.Inc() }

// CacheSize sets the function dnsfence_cache_entries reads (nil: 0); a rebuilt cache replaces it.
func (m *Metrics) CacheSize(f func() int) {
	if f == nil {
		m.cacheSize.Store(nil)
		return
	}
	m.cacheSize.Store(&f)
}

// Paused records whether blocking is paused.
func (m *Metrics) Paused(paused bool) {
	v := 0.0
	if paused {
		v = 1
	}
	m.paused.Set(v)
}

// InvalidPacket counts a packet that could not be parsed; it fits dns.Server.MsgInvalidFunc.
func (m *Metrics) InvalidPacket([]byte, error) { m.invalid.Inc() }

// Overload counts a query dropped for lack of in-flight capacity; it fits resolver.Handler.OnOverload.
func (m *Metrics) Overload() { m.overload.Inc() }

// Panic counts a recovered panic; it fits resolver.Handler.OnPanic.
func (m *Metrics) Panic() { m.panics.Inc() }

// Handler serves the metrics gathered from g.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// qtypeKey maps a query type to the bounded set qtypeLabel names: common types stay, the rest
// become TypeNone.
func qtypeKey(t uint16) uint16 {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeMX, dns.TypeTXT, dns.TypeNS, dns.TypeSOA,
		dns.TypePTR, dns.TypeSRV, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeDS, dns.TypeDNSKEY, dns.TypeCAA,
		dns.TypeNAPTR, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR:
		return t
	}
	return dns.TypeNone
}

// qtypeLabel maps a query type to a bounded label: common types by name, the rest "other".
func qtypeLabel(t uint16) string {
	if t = qtypeKey(t); t != dns.TypeNone {
		return dns.TypeToString[t]
	}
	return "other"
}

// rcodeKey maps an rcode to the bounded set rcodeLabel names: the named ones stay, the rest
// become -1.
func rcodeKey(rc int) int {
	// NOERROR to REFUSED, nearly every reply, without the lookup in miekg's map, which is cold
	// memory at every query when queries come a few thousand a second.
	if rc >= dns.RcodeSuccess && rc <= dns.RcodeRefused {
		return rc
	}
	if _, ok := dns.RcodeToString[rc]; ok {
		return rc
	}
	return -1
}

// rcodeLabel maps an rcode to its name; the table is fixed, so the label set is bounded.
func rcodeLabel(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "other"
}
