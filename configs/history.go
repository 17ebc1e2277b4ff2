package configs

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dnsfence/dnsfence/resolver/history"
)

// HistoryConfig is the `history:` section: the persisted attempt history (resolver/history).
// Zero values mean the defaults, so the section may be left out.
type HistoryConfig struct {
	// Enabled: unset means on.
	Enabled optionalBool `yaml:"enabled"`
	// Path is the SQLite file. Empty: $STATE_DIRECTORY/history.db under systemd (StateDirectory=),
	// else history.db in the download cache directory (downloads.cache_dir or its default).
	Path string `yaml:"path"`
	// PostgresURL, when set, replaces the SQLite file by a PostgreSQL database that several
	// instances may share.
	PostgresURL string `yaml:"postgres_url"`
	// Retention is how long rows are kept (90d, 2w, 36h); "" is 90d, 0 keeps them forever.
	Retention string `yaml:"retention"`
	// FlushInterval is how often aggregates are written; 0 is 10s.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Bucket is the rows' time resolution; 0 is 1h.
	Bucket time.Duration `yaml:"bucket"`
	// Instance names this dnsfence in the rows; "" is the host name.
	Instance string `yaml:"instance"`
	// MaxBufferedRows bounds the aggregates held in memory while the store is slow or down; 0 is 10000.
	MaxBufferedRows int `yaml:"max_buffered_rows"`
}

// ClientsConfig is the `clients:` section: where device names come from (besides records and
// hosts_files).
type ClientsConfig struct {
	// LeasesFile is a DHCP leases file in dnsmasq/OpenWrt format, watched like the lists.
	LeasesFile string `yaml:"leases_file"`
}

const defaultRetention = 90 * 24 * time.Hour

// historyDefaults are the history keys as configs/dnsfence.yaml documents them.
func historyDefaults() HistoryConfig {
	return HistoryConfig{Enabled: optTrue, Retention: "90d", FlushInterval: 10 * time.Second, Bucket: time.Hour, MaxBufferedRows: 10000}
}

// HistoryEnabled reports whether the attempt history is on.
func (c *Config) HistoryEnabled() bool { return c.History.Enabled != optFalse }

// optionalBool is a YAML bool that knows whether it was set. Not a *bool: configs are compared
// by their printed form (configEqual, restartNeeded), which would print the pointer.
type optionalBool uint8

const (
	optUnset optionalBool = iota
	optFalse
	optTrue
)

func (b *optionalBool) UnmarshalYAML(n *yaml.Node) error {
	var v bool
	if err := n.Decode(&v); err != nil {
		return err
	}
	*b = optFalse
	if v {
		*b = optTrue
	}
	return nil
}

// HistoryPath is the SQLite file.
func (c *Config) HistoryPath() string {
	if c.History.Path != "" {
		return c.History.Path
	}
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return filepath.Join(strings.Split(d, ":")[0], "history.db")
	}
	return filepath.Join(c.CacheDir(), "history.db")
}

// HistoryRetention is history.retention, validated (0: keep forever).
func (c *Config) HistoryRetention() time.Duration {
	if c.History.Retention == "" {
		return defaultRetention
	}
	d, _ := history.ParseAge(c.History.Retention)
	return d
}

// HistoryInstance is the name this instance writes its rows under.
func (c *Config) HistoryInstance() string {
	if c.History.Instance != "" {
		return c.History.Instance
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "dnsfence"
}

// OpenHistory opens the configured store; readOnly for reports (SQLite only: nothing is
// created or moved aside).
func (c *Config) OpenHistory(ctx context.Context, readOnly bool, onCorrupt func(path, moved string, err error)) (history.Store, error) {
	if c.History.PostgresURL != "" {
		return history.OpenPostgres(ctx, c.History.PostgresURL)
	}
	return history.OpenSQLite(ctx, c.HistoryPath(), history.SQLiteOptions{ReadOnly: readOnly, OnCorrupt: onCorrupt})
}

// validateHistory checks the history: and clients: sections.
func (c *Config) validateHistory() []error {
	var errs []error
	h := c.History
	if h.Retention != "" {
		if _, err := history.ParseAge(h.Retention); err != nil {
			errs = append(errs, c.problem("history.retention", "%v", err))
		}
	}
	if h.FlushInterval < 0 {
		errs = append(errs, c.problem("history.flush_interval", "must not be negative, got %s", h.FlushInterval))
	}
	if h.Bucket < 0 || (h.Bucket > 0 && (h.Bucket < time.Minute || (24*time.Hour)%h.Bucket != 0)) {
		errs = append(errs, c.problem("history.bucket", "want a divisor of 24h of at least 1m (e.g. 5m, 1h), got %s", h.Bucket))
	}
	if h.MaxBufferedRows < 0 {
		errs = append(errs, c.problem("history.max_buffered_rows", "must be 0 (default) or more, got %d", h.MaxBufferedRows))
	}
	if h.PostgresURL != "" {
		if u, err := url.Parse(h.PostgresURL); strings.Contains(h.PostgresURL, "://") && (err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql")) {
			errs = append(errs, c.problem("history.postgres_url", "want postgres://user@host/db or a key=value connection string"))
		}
	}
	if p := c.HistoryPath(); h.PostgresURL == "" && h.Path != "" {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			errs = append(errs, c.problem("history.path", "%s is a directory; name a file in it", p))
		}
	}
	if f := c.Clients.LeasesFile; f != "" {
		if st, err := os.Stat(f); err == nil && st.IsDir() {
			errs = append(errs, c.problem("clients.leases_file", "%s is a directory; name a file", f))
		}
	}
	return errs
}

// DescribeHistory says where the history goes, for the start-up log (without a password).
func (c *Config) DescribeHistory() string {
	if !c.HistoryEnabled() {
		return "off"
	}
	if c.History.PostgresURL != "" {
		if u, err := url.Parse(c.History.PostgresURL); err == nil && u.Scheme != "" {
			u.User = nil
			return "postgres " + u.Redacted()
		}
		return "postgres"
	}
	return fmt.Sprintf("sqlite %s", c.HistoryPath())
}
