package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/cmd/dnsfence/admin"
	"github.com/dnsfence/dnsfence/configs"
	"github.com/dnsfence/dnsfence/resolver/egress"
)

// startEgress installs the egress table (nil, nil when egress is off). Failing to own the table
// (no CAP_NET_ADMIN, no nf_tables) is a startup error that says how to fix it.
func startEgress(cfg *configs.Config, reg prometheus.Registerer, log *zap.Logger) (*egress.Runtime, error) {
	if !cfg.Egress.Enabled {
		return nil, nil
	}
	return egress.StartRuntime(egressPlan(cfg), egress.RuntimeOptions{
		Fetcher: cfg.EgressFetcher("dnsfence/" + version), Registry: reg, Log: log,
	})
}

// egressPlan is what the egress runtime needs of cfg.
func egressPlan(cfg *configs.Config) egress.Plan {
	e := cfg.Egress
	p := egress.Plan{
		Enabled: e.Enabled, Learn: e.Learn, Cleanup: e.Cleanup,
		LearnMinTTL: e.LearnMinTTL, LearnMaxTTL: e.LearnMaxTTL, LearnTimeout: cfg.QueryTimeout,
		DownloadTimeout: 2 * cfg.Downloads.Timeout,
		Sources:         cfg.EgressSources, Ruleset: cfg.EgressRuleset,
	}
	for _, l := range e.IPLists {
		if l.URL != "" {
			p.Downloads = append(p.Downloads, egress.Download{Name: l.Name, URL: l.URL, Every: l.RefreshInterval()})
		}
	}
	return p
}

// explainEgress answers /api/check?ip= from the running table.
func explainEgress(r *egress.Runtime) func(netip.Addr) (any, error) {
	return func(a netip.Addr) (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return admin.ExplainAddr(a, r.Explain(ctx, a)), nil
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
