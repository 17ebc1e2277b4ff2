package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/dnsfence/dnsfence/configs"
)

// watchFiles signals on the returned channel when any of paths may have changed, after a quiet
// period of debounce (editors and `mv` produce bursts). It watches the parent directories, not
// the files: editors, `mv` into place, delete-and-recreate and Kubernetes ConfigMap symlink swaps
// (..data) all replace the directory entry, which a watch on the old file would miss. It stops
// when ctx is done.
func watchFiles(ctx context.Context, paths []string, debounce time.Duration, log *zap.Logger) (<-chan struct{}, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	var dirs, listDirs []string
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			listDirs = append(listDirs, p) // a directory list: any change inside it counts
			if !slices.Contains(dirs, p) {
				dirs = append(dirs, p)
			}
		}
		if d := filepath.Dir(p); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			log.Warn("cannot watch a directory; changes there need SIGHUP", zap.String("dir", d), zap.Error(err))
		}
	}
	out := make(chan struct{}, 1)
	go func() {
		defer w.Close()
		var timer <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if relevant(ev.Name, paths) || slices.Contains(listDirs, filepath.Dir(ev.Name)) && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
					timer = time.After(debounce)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("file watch error", zap.Error(err))
			case <-timer:
				timer = nil
				select {
				case out <- struct{}{}:
				default: // a reload is already pending
				}
			}
		}
	}()
	return out, nil
}

// relevant reports whether an event on name can change one of paths: the file itself, or, in a
// ConfigMap-style directory, the ..data link or a ..timestamp directory that the files point into.
func relevant(name string, paths []string) bool {
	base := filepath.Base(name)
	if len(base) > 2 && base[:2] == ".." {
		return true
	}
	return slices.Contains(paths, filepath.Clean(name))
}

// watchedPaths are the files whose change should trigger a reload: the config file and the list
// (or list directory) and hosts files it names. URL lists are refreshed on their own schedule.
func watchedPaths(cfg *configs.Config, configPath string) []string {
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

// inWatchedDir reports whether file is in a directory the file watch covers (see watchFiles):
// every write to it then wakes the watcher, which for a query log is one wakeup per query.
func inWatchedDir(file string, paths []string) bool {
	if file == "" {
		return false
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return filepath.Clean(p)
	}
	dir := filepath.Dir(abs(file))
	for _, p := range paths {
		if p = abs(p); filepath.Dir(p) == dir || p == dir {
			return true
		}
	}
	return false
}
