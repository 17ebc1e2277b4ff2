package configs

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/dnsfence/dnsfence/blocklist"
)

// Fetcher downloads URL lists into the configured cache directory; userAgent names the client.
func (c *Config) Fetcher(userAgent string) *blocklist.Fetcher {
	retries := c.Downloads.Retries
	if retries == 0 {
		retries = -1 // the Fetcher reads 0 as its default
	}
	return &blocklist.Fetcher{
		CacheDir: c.CacheDir(), Timeout: c.Downloads.Timeout, Retries: retries,
		MaxBytes: int64(c.Downloads.MaxSizeMB) << 20, UserAgent: userAgent,
		Check: blocklist.CheckList,
	}
}

// ListSources are the lists to load: the enabled app lists first, then the configured blocklists,
// then the allowlists. A URL list is read from its cached download.
func (c *Config) ListSources(f *blocklist.Fetcher) []blocklist.Source {
	var out []blocklist.Source
	for _, id := range c.Apps {
		out = append(out, blocklist.Source{Name: id, Category: "apps", Path: AppPath(id), FS: Lists()})
	}
	add := func(l ListConfig, allow bool) {
		src := l.source(f, BuiltinPath)
		src.Allow = allow
		out = append(out, src)
	}
	for _, l := range c.Blocklists {
		add(l, false)
	}
	for _, l := range c.Allowlists {
		add(l, true)
	}
	return out
}

// URLLists are the configured lists downloaded from a URL.
func (c *Config) URLLists() []ListConfig {
	var out []ListConfig
	for _, l := range slices.Concat(c.Blocklists, c.Allowlists) {
		if l.URL != "" {
			out = append(out, l)
		}
	}
	return out
}

// ListApps maps each list name to the app its blocks count for (lists without one are absent).
func (c *Config) ListApps() map[string]string {
	m := map[string]string{}
	for _, id := range c.Apps {
		m[id] = id
	}
	for _, l := range c.Blocklists {
		if l.App != "" {
			m[l.Name] = l.App
		}
	}
	return m
}

// the handler's own bounds).
// RestartNeeded names the settings that differ between old and cfg and take effect only at a
// restart (listeners, the HTTP server, limits, logging, downloads).
func RestartNeeded(old, cfg *Config) []string {
	var out []string
	for _, f := range []struct {
		name     string
		old, new any
	}{
		{"listen", old.Listen, cfg.Listen}, {"http", old.HTTP, cfg.HTTP}, {"tls", old.TLS, cfg.TLS},
		{"query_timeout", old.QueryTimeout, cfg.QueryTimeout}, {"tcp_idle_timeout", old.TCPIdleTimeout, cfg.TCPIdleTimeout},
		{"limits.max_inflight", old.Limits.MaxInflight, cfg.Limits.MaxInflight},
		{"limits.max_tcp_connections", old.Limits.MaxTCPConnections, cfg.Limits.MaxTCPConnections},
		{"limits.max_tcp_queries", old.Limits.MaxTCPQueries, cfg.Limits.MaxTCPQueries},
		{"limits.heap_floor_mb", old.Limits.HeapFloorMB, cfg.Limits.HeapFloorMB},
		{"limits.udp_blocking_reads", old.Limits.UDPBlockingReads, cfg.Limits.UDPBlockingReads},
		{"log", LogSettings(old.Log), LogSettings(cfg.Log)},
		{"downloads", old.Downloads, cfg.Downloads},
		{"history", old.History, cfg.History},
	} {
		if fmt.Sprint(f.old) != fmt.Sprint(f.new) {
			out = append(out, f.name)
		}
	}
	return out
}

// source is where list l is read from: its file or directory, a built-in list (builtin gives
// its path inside Lists()), or the cached download of its URL (optional: it may not exist yet).
func (l ListConfig) source(f *blocklist.Fetcher, builtin func(name string) string) blocklist.Source {
	src := blocklist.Source{Name: l.Name, Category: l.Category, Path: l.Path}
	switch {
	case l.Builtin != "":
		src.Path, src.FS = builtin(l.Builtin), Lists()
	case l.URL != "":
		src.Path, src.URL, src.Optional = f.CachePath(l.Name), l.URL, true
	}
	return src
}

// WatchedPaths are the files whose change should trigger a reload: the config file (configPath)
// and the list (or list directory) and hosts files it names. URL lists are refreshed on their
// own schedule.
func (cfg *Config) WatchedPaths(configPath string) []string {
	var out []string
	add := func(p string) {
		if p != "" {
			out = append(out, filepath.Clean(p))
		}
	}
	add(configPath)
	for _, l := range slices.Concat(cfg.Blocklists, cfg.Allowlists) {
		add(l.Path)
	}
	for _, h := range cfg.HostsFiles {
		add(h)
	}
	for _, l := range cfg.Egress.IPLists {
		add(l.Path)
	}
	return out
}
