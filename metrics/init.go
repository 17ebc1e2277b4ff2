package metrics

import (
	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
)

// UpstreamErrorReasons are the reason label values of dnsfence_upstream_errors_total, as
// upstream.ErrorReason returns them. Each upstream starts with all of them at 0, so the errors
// panel and the no-upstream alert see a series before the first error.
func UpstreamErrorReasons() []string {
	return []string{"timeout", "network", "mismatch", "busy", "servfail", "refused", "formerr", "canceled", "other"}
}

// InitQueries creates at 0 the dnsfence_queries_total series that a dashboard or alert reads
// before the first such query: per group and transport, the usual rcode of each outcome (A
// queries; blockedRcode is the sinkhole mode's). Without them, rate(...{rcode="SERVFAIL"}) has no
// data until the first failure and the SERVFAIL ratio alert cannot evaluate.
func (m *Metrics) InitQueries(groups []string, transports []resolver.Transport, blockedRcode int) {
	pairs := []struct {
		o     resolver.Outcome
		rcode int
	}{
		{resolver.OutcomeForwarded, dns.RcodeSuccess},
		{resolver.OutcomeForwarded, dns.RcodeNameError},
		{resolver.OutcomeCached, dns.RcodeSuccess},
		{resolver.OutcomeBlocked, blockedRcode},
		{resolver.OutcomeError, dns.RcodeServerFailure},
		{resolver.OutcomeRefused, dns.RcodeRefused},
		{resolver.OutcomeInvalid, dns.RcodeFormatError},
	}
	for _, g := range groups {
		gs := m.groupSeries(g)
		for _, t := range transports {
			for _, p := range pairs {
				m.queryCounter(gs, qtypeKey(dns.TypeA), rcodeKey(p.rcode), p.o, t, g)
			}
		}
	}
}

// ConfigValid records that the config file reads valid again although nothing changed (it was
// fixed back to the running config): the refusal is over, but no reload is counted.
func (m *Metrics) ConfigValid() { m.configLastResult.Set(1) }
