package egress

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the egress metrics, registered on the registry given to NewMetrics. The drop
// counters and set sizes are read from the kernel at scrape time.
type Metrics struct {
	Learned, Refreshed, Skipped, Expired, LearnDropped, UpdateFailures prometheus.Counter
	up                                                                 prometheus.Gauge

	owner   atomic.Pointer[Owner]
	ruleset atomic.Pointer[Ruleset]

	packets, bytes, elements *prometheus.Desc
}

// NewMetrics registers the egress metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dnsfence", Subsystem: "egress", Name: name, Help: help})
	}
	m := &Metrics{
		Learned:        c("learned_total", "Addresses of blocked names added to the learned sets."),
		Refreshed:      c("learned_refreshed_total", "Learned addresses whose timeout was extended."),
		Skipped:        c("learn_skipped_total", "Addresses of blocked names not learned because a name that is not blocked was recently answered with them."),
		Expired:        c("learned_expired_total", "Learned addresses that timed out."),
		LearnDropped:   c("learn_dropped_total", "Blocked names or addresses not learned because the learning queue was full."),
		UpdateFailures: c("update_failures_total", "Netlink updates of the egress table that failed."),
		up: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dnsfence", Subsystem: "egress", Name: "up",
			Help: "1 while the last netlink update of the egress table succeeded, else 0."}),
		packets:  prometheus.NewDesc("dnsfence_egress_dropped_packets_total", "Packets dropped or rejected by the egress rules, by set.", []string{"set", "app"}, nil),
		bytes:    prometheus.NewDesc("dnsfence_egress_dropped_bytes_total", "Bytes dropped or rejected by the egress rules, by set.", []string{"set", "app"}, nil),
		elements: prometheus.NewDesc("dnsfence_egress_set_elements", "Addresses and prefixes in each egress set (IPv4 and IPv6 together).", []string{"set"}, nil),
	}
	for _, col := range []prometheus.Collector{m.Learned, m.Refreshed, m.Skipped, m.Expired, m.LearnDropped, m.UpdateFailures, m.up, m} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Options returns owner options that feed these metrics, calling onUpdate too (may be nil).
func (m *Metrics) Options(opts Options, onUpdate func(error)) Options {
	opts.OnLearned = func(added, refreshed int) {
		m.Learned.Add(float64(added))
		m.Refreshed.Add(float64(refreshed))
	}
	opts.OnExpired = func(n int) { m.Expired.Add(float64(n)) }
	opts.OnUpdate = func(err error) {
		if err != nil {
			m.UpdateFailures.Inc()
			m.up.Set(0)
		} else {
			m.up.Set(1)
		}
		if onUpdate != nil {
			onUpdate(err)
		}
	}
	return opts
}

// Watch makes the scrape read o's counters, labelled after rs (the latest applied).
func (m *Metrics) Watch(o *Owner, rs *Ruleset) {
	m.owner.Store(o)
	m.ruleset.Store(rs)
	if o != nil {
		m.up.Set(1)
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.packets
	ch <- m.bytes
	ch <- m.elements
}

// Collect implements prometheus.Collector: one netlink dump per scrape, bounded in time.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	o, rs := m.owner.Load(), m.ruleset.Load()
	if o == nil || rs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counters, err := o.Counters(ctx)
	if err == nil {
		for name, c := range counters {
			set, app := name, ""
			if src, ok := rs.SourceNamed(name); ok {
				set, app = src.Name, src.App
			}
			ch <- prometheus.MustNewConstMetric(m.packets, prometheus.CounterValue, float64(c.Packets), set, app)
			ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.CounterValue, float64(c.Bytes), set, app)
		}
	}
	for set, n := range o.Elements(ctx) {
		ch <- prometheus.MustNewConstMetric(m.elements, prometheus.GaugeValue, float64(n), set)
	}
}
