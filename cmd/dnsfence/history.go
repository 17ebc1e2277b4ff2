package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/dnsfence/dnsfence/configs"
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

// deviceNames names clients from cfg's records, hosts files and leases file, read now.
func deviceNames(cfg *configs.Config) func(string) string {
	return history.DeviceNames(cfg.Records, cfg.HostsFiles, cfg.Clients.LeasesFile)
}

// curDeviceNames are the device names of the running config (they follow reloads).
func (e *env) curDeviceNames() func(string) string { return deviceNames(e.cur.Load().cfg) }
