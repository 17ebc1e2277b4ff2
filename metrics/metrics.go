// Package metrics exports dnsfence's Prometheus metrics. Everything is registered on the registerer
// passed to New (never the global one) and every label has a bounded set of values: no query names,
// no client addresses.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dnsfence/dnsfence/resolver"
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
	listLastSuccess  *prometheus.GaugeVec
	listInvalid      *prometheus.GaugeVec
	configReloads    *prometheus.CounterVec
	configLastOK     prometheus.Gauge

	// durations by outcome, looked up once so the hot path does no label hashing for them.
	durationByOutcome []prometheus.Observer
}

// New creates the metrics and registers them on reg. version is exported in dnsfence_build_info.
func New(reg prometheus.Registerer, version string) (*Metrics, error) {
	m := &Metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "queries_total",
			Help: "Queries answered, by query type, response code, outcome and transport (udp, tcp, tls, https).",
		}, []string{"qtype", "rcode", "outcome", "transport"}),
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
			Help: "Queries that matched a blocklist but were answered normally, by list, app, client group and reason (log-only, exempt).",
		}, []string{"list", "app", "group", "reason"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "request_duration_seconds",
			Help:    "Duration of exchanges with an upstream resolver, failed ones included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"upstream"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "errors_total",
			Help: "Failed exchanges with an upstream resolver, by reason (timeout, network, mismatch, servfail, refused, formerr, canceled, other).",
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
		listLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "blocklist", Name: "last_success_timestamp_seconds",
			Help: "Unix time of the last successful load of each blocklist.",
		}, []string{"list"}),
		listInvalid: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "blocklist", Name: "invalid_lines",
			Help: "Lines of each blocklist skipped as invalid at its last successful load.",
		}, []string{"list"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "config", Name: "reloads_total",
			Help: "Config file reloads, by result (success, failure: the running config stays).",
		}, []string{"result"}),
		configLastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "Unix time the running config was loaded.",
		}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; labels say which build is running.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)

	for _, o := range resolver.Outcomes() {
		m.durationByOutcome = append(m.durationByOutcome, m.queryDuration.WithLabelValues(o.String()))
	}
	var errs []error
	for _, c := range []prometheus.Collector{
		m.queries, m.queryDuration, m.blocked, m.allowed, m.upstreamDuration, m.upstreamErrors, m.upstreamHealthy,
		m.invalid, m.panics, m.overload, m.listEntries, m.listReloads, m.listLastSuccess, m.listInvalid, m.configReloads, m.configLastOK, buildInfo,
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
			m.queries.WithLabelValues(qtypeLabel(req.Question().Qtype), rcodeLabel(rcode), outcome.String(), req.Transport.String()).Inc()
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
					m.blocked.WithLabelValues(resp.List, app, group).Inc()
				} else {
					m.allowed.WithLabelValues(resp.List, app, group, resp.Allowed.String()).Inc()
				}
			}
			return resp, err
		})
	}
}

// ObserveUpstream records one exchange with an upstream; it fits resolver.Forward.Observe.
func (m *Metrics) ObserveUpstream(upstream string, d time.Duration, err error) {
	m.upstreamDuration.WithLabelValues(upstream).Observe(d.Seconds())
	if err != nil {
		m.upstreamErrors.WithLabelValues(upstream, resolver.ErrorReason(err)).Inc()
	}
}

// InitUpstream creates an upstream's duration series so dashboards see it before its first query.
func (m *Metrics) InitUpstream(upstream string) {
	m.upstreamDuration.WithLabelValues(upstream)
	m.upstreamHealthy.WithLabelValues(upstream).Set(1)
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
		return
	}
	m.listReloads.WithLabelValues(list, "success").Inc()
	m.listInvalid.WithLabelValues(list).Set(float64(invalid))
	m.listLastSuccess.WithLabelValues(list).Set(float64(at.Unix()))
}

// InitList creates a list's blocked counters for each group (app "" is filed as other) so a list
// that never matched still shows 0 and dashboards can list it.
func (m *Metrics) InitList(list, app string, groups []string) {
	if app == "" {
		app = "other"
	}
	for _, g := range groups {
		m.blocked.WithLabelValues(list, app, g)
	}
}

// ConfigLoaded records a config load or reload at time at (ok false: refused, old config kept).
func (m *Metrics) ConfigLoaded(ok bool, at time.Time) {
	if !ok {
		m.configReloads.WithLabelValues("failure").Inc()
		return
	}
	m.configReloads.WithLabelValues("success").Inc()
	m.configLastOK.Set(float64(at.Unix()))
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

// qtypeLabel maps a query type to a bounded label: common types by name, the rest "other".
func qtypeLabel(t uint16) string {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeMX, dns.TypeTXT, dns.TypeNS, dns.TypeSOA,
		dns.TypePTR, dns.TypeSRV, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeDS, dns.TypeDNSKEY, dns.TypeCAA,
		dns.TypeNAPTR, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR:
		return dns.TypeToString[t]
	}
	return "other"
}

// rcodeLabel maps an rcode to its name; the table is fixed, so the label set is bounded.
func rcodeLabel(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "other"
}
