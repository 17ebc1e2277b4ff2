package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

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
	since := 7 * 24 * time.Hour
	if *h.since != "" {
		if since, err = history.ParseAge(*h.since); err != nil {
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
	sum, err := history.Report(ctx, s, history.Filter{Since: time.Now().Add(-since), App: *h.app, Client: *h.client}, deviceNames(cfg))
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

// deviceNames names clients from cfg's records, hosts files and leases file, read now.
func deviceNames(cfg *configs.Config) func(string) string {
	return history.DeviceNames(cfg.Records, cfg.HostsFiles, cfg.Clients.LeasesFile)
}

// curDeviceNames are the device names of the running config (they follow reloads).
func (e *env) curDeviceNames() func(string) string { return deviceNames(e.cur.Load().cfg) }
