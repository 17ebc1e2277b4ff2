// Package filewatch tells the reload loop when files it was built from may have changed. It
// watches directories, not files (see Watch), and only signals: what to re-read is the caller's.
package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Watch signals on the returned channel when any of paths may have changed, after a quiet
// period of debounce (editors and `mv` produce bursts). It watches the parent directories, not
// the files: editors, `mv` into place, delete-and-recreate and Kubernetes ConfigMap symlink swaps
// (..data) all replace the directory entry, which a watch on the old file would miss. It stops
// when ctx is done.
func Watch(ctx context.Context, paths []string, debounce time.Duration, log *zap.Logger) (<-chan struct{}, error) {
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

// InWatchedDir reports whether file is in a directory that Watch(paths) watches: every write to
// it then wakes the watcher, which for a query log is one wakeup per query.
func InWatchedDir(file string, paths []string) bool {
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
