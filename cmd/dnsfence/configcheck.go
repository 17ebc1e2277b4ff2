package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/configs"
)

// checkConfig is -config.check after the config itself validated: it downloads every URL list
// into a temporary directory (never the cache a running server uses), loads every list as the
// server would, and reports per list what went wrong (HTTP errors, unreachable hosts) and the
// lines it skipped. It fails if any list cannot be loaded, so a mistyped URL does not pass.
func checkConfig(ctx context.Context, cfg *configs.Config, stdout io.Writer) error {
	tmp, err := os.MkdirTemp("", "dnsfence-config-check")
	if err != nil {
		return fmt.Errorf("config check: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	f := cfg.Fetcher("dnsfence/" + version)
	f.CacheDir = tmp

	urls := cfg.URLLists()
	results := make([]error, len(urls))
	sizes := make([]int64, len(urls))
	var wg sync.WaitGroup
	for i, l := range urls {
		wg.Go(func() {
			timeout := 2 * cfg.Downloads.Timeout
			if timeout <= 0 {
				timeout = time.Minute
			}
			dctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			res, err := f.Fetch(dctx, l.Name, l.URL)
			results[i], sizes[i] = err, res.Bytes
		})
	}
	wg.Wait()
	var failed []string
	for i, l := range urls {
		if err := results[i]; err != nil {
			fmt.Fprintf(stdout, "list %s: cannot download %s: %v\n", l.Name, l.URL, err)
			failed = append(failed, l.Name)
		}
	}

	set, infos, err := blocklist.Load(cfg.ListSources(f))
	if err != nil {
		return cfg.ListLoadError(err)
	}
	for _, l := range infos {
		for i, u := range urls {
			if u.Name == l.Name && results[i] == nil {
				fmt.Fprintf(stdout, "list %s: downloaded %s (%d bytes): %s\n", l.Name, u.URL, sizes[i], count(l.Entries, "entry", "entries"))
			}
		}
		if l.Invalid+l.Unsupported > 0 {
			fmt.Fprintf(stdout, "list %s: %d invalid and %d unsupported lines skipped, e.g.\n  %s\n", l.Name, l.Invalid, l.Unsupported, strings.Join(l.Examples, "\n  "))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s: %s of %d could not be loaded: %s", cfg.Source(), count(len(failed), "URL list", "URL lists"),
			len(urls), strings.Join(failed, ", "))
	}
	fmt.Fprintf(stdout, "%s: OK (%s, %s with %s)\n", cfg.Source(), count(len(cfg.Listen), "listen address", "listen addresses"),
		count(len(infos), "list", "lists"), count(set.Len(), "entry", "entries"))
	return checkEgressConfig(cfg, stdout)
}
