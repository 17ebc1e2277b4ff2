package configs

import (
	"fmt"
	"os"

	"github.com/dnsfence/dnsfence/resolver"
)

// validateQueryLog checks the log.query_* keys.
func (c *Config) validateQueryLog() []error {
	var errs []error
	if c.Log.QueryMaxSizeMB < 1 {
		errs = append(errs, c.problem("log.query_max_size_mb", "must be at least 1 (megabytes), got %d", c.Log.QueryMaxSizeMB))
	}
	if c.Log.QueryMaxBackups < 0 {
		errs = append(errs, c.problem("log.query_max_backups", "must be 0 (keep every rotated file) or more, got %d", c.Log.QueryMaxBackups))
	}
	if c.Log.QueryMaxAgeDays < 0 {
		errs = append(errs, c.problem("log.query_max_age_days", "must be 0 (no age limit) or more, got %d", c.Log.QueryMaxAgeDays))
	}
	if _, err := resolver.ParseClientPrivacy(c.Log.QueryClient); err != nil {
		errs = append(errs, c.problem("log.query_client", "%v", err))
	}
	if c.Log.QueryFile != "" {
		if st, err := os.Stat(c.Log.QueryFile); err == nil && st.IsDir() {
			errs = append(errs, c.problem("log.query_file", "%s is a directory; name a file in it", c.Log.QueryFile))
		}
	}
	return errs
}

// ClientPrivacy is log.query_client, validated.
func (c *Config) ClientPrivacy() resolver.ClientPrivacy {
	p, _ := resolver.ParseClientPrivacy(c.Log.QueryClient)
	return p
}

// LogSettings are the log settings that apply only at start (log.queries and log.query_client
// apply at a reload: they are part of the query chain).
func LogSettings(c LogConfig) string {
	c.Queries, c.QueryClient = false, ""
	return fmt.Sprintf("%+v", c)
}
