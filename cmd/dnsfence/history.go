package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/dnsfence/dnsfence/configs"
	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/history"
)

// startHistory starts the attempt history (nil when history.enabled is false). The store opens in
// the background, so a database that is down at start does not keep DNS from starting.
func startHistory(cfg *configs.Config, log *zap.Logger, reg prometheus.Registerer) (*history.Recorder, error) {
	if !cfg.HistoryEnabled() {
		return nil, nil
	}
	if cfg.History.PostgresURL == "" && !history.SQLiteBuiltIn() {
		log.Warn("attempt history off", zap.Error(history.ErrNoSQLite))
		return nil, nil
	}
	h := cfg.History
	rec, err := history.New(history.Options{
		Open: func(ctx context.Context) (history.Store, error) {
			return cfg.OpenHistory(ctx, false, func(path, moved string, err error) {
				log.Error("history database is corrupt: moved aside, starting a fresh one",
					zap.String("path", path), zap.String("moved_to", moved), zap.Error(err))
			})
		},
		Instance: cfg.HistoryInstance(), Privacy: cfg.ClientPrivacy(), Bucket: h.Bucket,
		FlushInterval: h.FlushInterval, Retention: cfg.HistoryRetention(), MaxRows: h.MaxBufferedRows,
		Log: log, Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	log.Info("attempt history", zap.String("store", cfg.DescribeHistory()), zap.String("instance", cfg.HistoryInstance()),
		zap.Duration("retention", cfg.HistoryRetention()))
	return rec, nil
}

// closeHistory writes what is left, bounded by the shutdown timeout.
func closeHistory(rec *history.Recorder, timeout time.Duration, log *zap.Logger) {
	if rec == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := rec.Close(ctx); err != nil {
		log.Error("history: closing", zap.Error(err))
	}
}

// historyStage is the chain stage that feeds the history, or none.
func historyStage(rec *history.Recorder) resolver.Middleware {
	if rec == nil {
		return nil
	}
	return rec.Middleware()
}

// historyQuery is one report request: since (an age such as 7d), app and client filters.
type historyQuery struct {
	since       time.Duration
	app, client string
}

func (q historyQuery) run(ctx context.Context, s history.Store, cfg *configs.Config) (history.Summary, error) {
	since := time.Now().Add(-q.since)
	rows, err := s.Query(ctx, history.Filter{Since: since, App: q.app, Client: q.client})
	if err != nil {
		return history.Summary{}, fmt.Errorf("history: %w", err)
	}
	return history.Summarize(since, rows, deviceNames(cfg)), nil
}

// historyHandler serves the history from the running store: /api/history (JSON, ?format=csv or
// text) and /report?since=… (text, ?format=json or csv); without since, /report is the in-memory
// report since start (next).
func historyHandler(rec *history.Recorder, cfg func() *configs.Config, next http.Handler, defaultFormat string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		qv := r.URL.Query()
		if next != nil && !qv.Has("since") {
			next.ServeHTTP(w, r)
			return
		}
		if rec == nil {
			http.Error(w, "history is off (history.enabled: false)", http.StatusNotFound)
			return
		}
		q := historyQuery{since: 24 * time.Hour, app: qv.Get("app"), client: qv.Get("client")}
		if s := qv.Get("since"); s != "" {
			d, err := history.ParseAge(s)
			if err != nil {
				http.Error(w, "since: "+err.Error(), http.StatusBadRequest)
				return
			}
			q.since = d
		}
		// Write what is aggregated so far, so the answer includes the last seconds.
		fctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		ferr := rec.Flush(fctx)
		cancel()
		s := rec.Store()
		if s == nil {
			http.Error(w, fmt.Sprintf("history store not available: %v", ferr), http.StatusServiceUnavailable)
			return
		}
		sum, err := q.run(r.Context(), s, cfg())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		format := qv.Get("format")
		if format == "" {
			format = defaultFormat
		}
		switch format {
		case "json":
			w.Header().Set("Content-Type", "application/json")
			_ = sum.WriteJSON(w)
		case "csv":
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			_ = sum.WriteCSV(w)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_ = sum.WriteText(w)
		}
	})
}

// historyFlags are the report subcommand's flags that read the store directly.
type historyFlags struct {
	since, app, client, config *string
	csv                        *bool
}

func addHistoryFlags(fs *flag.FlagSet) historyFlags {
	return historyFlags{
		since:  fs.String("since", "", "read the history store: attempts in the last `age` (7d, 2w, 36h)"),
		app:    fs.String("app", "", "with the history: only this `app` id"),
		client: fs.String("client", "", "with the history: only this client `address` (as stored)"),
		config: fs.String("config", "", "with the history: the dnsfence config `file` naming the store (default: built-in)"),
		csv:    fs.Bool("csv", false, "with the history: print CSV"),
	}
}

// set reports whether any history flag was given: the report then reads the store itself
// (works with the server stopped) instead of asking the running server's /report.
func (h historyFlags) set() bool {
	return *h.since != "" || *h.app != "" || *h.client != "" || *h.config != "" || *h.csv
}

// runHistoryReport reads the store named by the config and prints the summary.
func runHistoryReport(h historyFlags, asJSON bool, stdout io.Writer) error {
	cfg, err := loadConfig(&options{config: *h.config})
	if err != nil {
		return err
	}
	if !cfg.HistoryEnabled() {
		return errors.New("report: history is off in this config (history.enabled: false)")
	}
	q := historyQuery{since: 7 * 24 * time.Hour, app: *h.app, client: *h.client}
	if *h.since != "" {
		if q.since, err = history.ParseAge(*h.since); err != nil {
			return fmt.Errorf("report: -since %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := cfg.OpenHistory(ctx, true, nil)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer s.Close()
	sum, err := q.run(ctx, s, cfg)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	switch {
	case asJSON:
		return sum.WriteJSON(stdout)
	case *h.csv:
		return sum.WriteCSV(stdout)
	}
	return sum.WriteText(stdout)
}

// deviceNames names client addresses from the records and hosts files and the DHCP leases file,
// read when a report is made (so a renamed device shows its current name). The leases file wins:
// it is the freshest. Names never become metric labels.
func deviceNames(cfg *configs.Config) func(client string) string {
	names := map[netip.Addr]string{}
	for _, r := range cfg.Records {
		if rr, err := dns.NewRR(r); err == nil && rr != nil {
			addName(names, rr)
		}
	}
	for _, p := range cfg.HostsFiles {
		if f, err := os.Open(p); err == nil {
			parseHosts(f, names)
			f.Close()
		}
	}
	if p := cfg.Clients.LeasesFile; p != "" {
		if f, err := os.Open(p); err == nil {
			for a, n := range parseLeases(f) {
				names[a] = n
			}
			f.Close()
		}
	}
	return func(client string) string {
		a, err := netip.ParseAddr(client)
		if err != nil {
			return ""
		}
		return names[a.Unmap()]
	}
}

func addName(names map[netip.Addr]string, rr dns.RR) {
	ip, ok := resolver.RRAddr(rr)
	if _, seen := names[ip]; ok && !seen {
		names[ip] = strings.TrimSuffix(rr.Header().Name, ".")
	}
}

// parseHosts reads "IP name…" lines; the first name of an address wins.
func parseHosts(r io.Reader, names map[netip.Addr]string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if ip, err := netip.ParseAddr(f[0]); err == nil {
			if _, ok := names[ip.Unmap()]; !ok {
				names[ip.Unmap()] = f[1]
			}
		}
	}
}

// parseLeases reads a dnsmasq/OpenWrt leases file: "<expiry> <mac> <ip> <hostname> <client-id>",
// hostname "*" when the client sent none (skipped). Malformed lines are skipped: dnsmasq
// rewrites the file while we may read it.
func parseLeases(r io.Reader) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] == "*" {
			continue
		}
		if ip, err := netip.ParseAddr(f[2]); err == nil {
			out[ip.Unmap()] = f[3]
		}
	}
	return out
}

// curConfig is the running config (device names follow reloads).
func (e *env) curConfig() *configs.Config { return e.cur.Load().cfg }
