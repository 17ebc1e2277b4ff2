package blocklist

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Live serves the current Set and reloads it from its sources. Match is one
// atomic load and never waits for a reload.
type Live struct {
	sources  []Source
	onReload func(Result)
	opts     LiveOptions
	set      atomic.Pointer[Set]

	mu      sync.Mutex // serializes Reload
	initial Result     // the first load, see Initial
}

// Result describes one Reload.
type Result struct {
	Lists    []ListInfo       // per list after the reload (entries now served; a failed list keeps its last good info)
	Failed   map[string]error // list name -> why it kept its old entries; nil if none failed
	Entries  int              // total distinct entries now served
	Duration time.Duration
	// Indexed: the Set was mapped from the index kept in LiveOptions.IndexDir, not built.
	Indexed bool
	// Child: LiveOptions.BuildIndex built the Set's index in another process; this one only
	// checked and mapped it.
	Child bool
	// ChildErr: why LiveOptions.BuildIndex was set but the Set was built in this process (the
	// hook failed, a list failed, or its file did not pass the checks). nil if Child, or if
	// there is no hook.
	ChildErr error
}

// Err joins the errors of Failed in source order; nil if none failed.
func (r Result) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	errs := make([]error, 0, len(r.Failed))
	for _, li := range r.Lists {
		if err, ok := r.Failed[li.Name]; ok {
			errs = append(errs, err)
		}
	}
	if len(errs) < len(r.Failed) {
		// A Result not built by Reload: keep the rest, in a stable order.
		var rest []string
		for name := range r.Failed {
			if !slices.ContainsFunc(r.Lists, func(li ListInfo) bool { return li.Name == name }) {
				rest = append(rest, name)
			}
		}
		sort.Strings(rest)
		for _, name := range rest {
			errs = append(errs, r.Failed[name])
		}
	}
	return errors.Join(errs...)
}

// NewLive loads every source; unlike Reload it fails if any source does, so that the server does
// not start with a list missing (an Optional source that is missing or fails starts empty; Initial
// tells). onReload, if non-nil, is called by each Reload (not for this initial load); it must not
// call Reload.
func NewLive(sources []Source, onReload func(Result)) (*Live, error) {
	return NewLiveWith(sources, onReload, LiveOptions{})
}

// NewLiveWith is NewLive with options: see LiveOptions.
func NewLiveWith(sources []Source, onReload func(Result), opts LiveOptions) (*Live, error) {
	sources = slices.Clone(sources)
	start := time.Now()
	if err := checkSources(sources); err != nil {
		return nil, err
	}
	if opts.IndexDir != "" {
		if err := os.MkdirAll(opts.IndexDir, 0o755); err != nil {
			if opts.OnIndexError != nil {
				opts.OnIndexError(fmt.Errorf("blocklist index: %w", err))
			}
			opts.IndexDir = ""
		}
	}
	var pace *pacer
	if opts.Aside {
		pace = newPacer()
	}
	bo := opts.buildOptions(sources, pace)
	var s *Set
	failed := map[string]error{}
	if bo.path != "" {
		var err error
		s, err = loadIndex(bo.path, bo.hash, sources, pace)
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errStaleIndex) && opts.OnIndexError != nil {
			opts.OnIndexError(fmt.Errorf("rebuilding the blocklist index: %w", err))
		}
	}
	indexed := s != nil
	var child bool
	var childErr error
	if s == nil && opts.Aside && opts.BuildIndex != nil && bo.path != "" {
		s, childErr = childBuild(opts, sources, bo, pace)
		child = childErr == nil
	}
	if s == nil {
		s, failed = build(sources, nil, nil, bo)
	}
	fatal := map[string]error{}
	for _, src := range sources {
		switch err := failed[src.Name]; {
		case err != nil && !src.Optional:
			fatal[src.Name] = err
		case err == nil && src.Optional && !src.exists():
			failed[src.Name] = fmt.Errorf("blocklist %q: not downloaded yet, starting without it", src.Name)
		}
	}
	if len(fatal) > 0 {
		return nil, Result{Lists: s.Lists(), Failed: fatal}.Err()
	}
	l := &Live{sources: sources, onReload: onReload, opts: opts}
	l.set.Store(s)
	l.initial = Result{Lists: s.Lists(), Entries: s.Len(), Duration: time.Since(start), Indexed: indexed, Child: child, ChildErr: childErr}
	if len(failed) > 0 {
		l.initial.Failed = failed
	}
	return l, nil
}

// childBuild has opts.BuildIndex build the index of sources (hashed as bo) and maps it.
func childBuild(opts LiveOptions, sources []Source, bo buildOptions, pace *pacer) (*Set, error) {
	if err := opts.BuildIndex(context.Background(), slices.Clone(sources), opts.IndexDir); err != nil {
		return nil, fmt.Errorf("blocklist index built in a child process: %w", err)
	}
	return mapChildIndex(bo, sources, pace)
}

// mapChildIndex maps the index a child kept for the sources hashed as bo, after the usual checks.
func mapChildIndex(bo buildOptions, sources []Source, pace *pacer) (*Set, error) {
	if bo.path == "" {
		return nil, errors.New("blocklist index built in a child process: the lists could not be hashed")
	}
	s, err := loadIndex(bo.path, bo.hash, sources, pace)
	if err != nil {
		return nil, fmt.Errorf("blocklist index built in a child process: %w", err)
	}
	return s, nil
}

// DropPages takes the pages of the current Set's index file out of this process's memory, for a
// Live that another has replaced (a config reload): the queries still reading it fault them
// back in, and its mapping goes with the Set. Without it they stay until a collection unmaps it.
func (l *Live) DropPages() { l.set.Load().dropPages() }

// dropPages takes the pages s maps from its index file out of this process's memory.
func (s *Set) dropPages() {
	if s != nil && s.ix != nil && s.ix.mem != nil {
		s.ix.mem.dropFilePages()
	}
}

// Initial describes the first load. Failed holds the Optional lists that started empty.
func (l *Live) Initial() Result { return l.initial }

// Sources returns the sources, in order.
func (l *Live) Sources() []Source { return slices.Clone(l.sources) }

// Explain explains name against the current Set (see Set.Explain) and locates each rule in its
// list's files.
func (l *Live) Explain(name string) Explanation {
	e := l.set.Load().Explain(name)
	for i := range e.Hits {
		h := &e.Hits[i]
		j := slices.IndexFunc(l.sources, func(s Source) bool { return s.Name == h.List })
		if j < 0 {
			continue
		}
		h.File, h.Line = l.sources[j].locate(h.Kind, h.value)
	}
	return e
}

// Match matches name against the current Set; see Set.Match.
func (l *Live) Match(name string) (list, rule string, ok bool) {
	return l.set.Load().Match(name)
}

// MatchIn matches name against the given lists of the current Set; see Set.MatchIn.
func (l *Live) MatchIn(name string, mask ListMask) (list, rule string, ok bool) {
	return l.set.Load().MatchIn(name, mask)
}

// Mask returns the ListMask selecting the named lists; unknown names are an error.
func (l *Live) Mask(names ...string) (ListMask, error) {
	var m ListMask
	for _, n := range names {
		i := slices.IndexFunc(l.sources, func(s Source) bool { return s.Name == n })
		switch {
		case i < 0:
			return 0, fmt.Errorf("no list %q", n)
		case i >= MaxMaskedLists:
			return 0, fmt.Errorf("list %q: only the first %d lists can be selected per group", n, MaxMaskedLists)
		}
		m |= 1 << i
	}
	return m, nil
}

// Set returns the Set currently served.
func (l *Live) Set() *Set {
	return l.set.Load()
}

// Reload re-reads every source and swaps in a new Set. A source that fails
// keeps its last good entries, so one broken download does not unblock a
// whole list; the others are updated. Reloads are serialized. onReload is
// called with the result before Reload returns.
//
// Only a missing, unreadable or all-invalid file counts as a failure: list
// files should be replaced atomically (write aside, then rename), or a reload
// may read a truncated file as a valid, shorter list. The new Set is built
// beside the old one, which serves until the swap: by LiveOptions.BuildIndex in
// another process if it is set, else (or if that fails) here, giving way to
// queries every few milliseconds.
func (l *Live) Reload() Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	start := time.Now()
	old := l.set.Load()
	// The hash and the build are a second or more of CPU for a big list, while queries are
	// answered: they give way every few milliseconds (see pacer).
	pace := newPacer()
	useChild := l.opts.BuildIndex != nil && l.opts.IndexDir != ""
	var childErr error
	if useChild {
		if childErr = l.opts.BuildIndex(context.Background(), slices.Clone(l.sources), l.opts.IndexDir); childErr != nil {
			childErr = fmt.Errorf("blocklist index built in a child process: %w", childErr)
		}
	}
	// Hashed after the child's build: a list changed meanwhile makes its file stale.
	bo := l.opts.buildOptions(l.sources, pace)
	var s *Set
	if useChild && childErr == nil {
		s, childErr = mapChildIndex(bo, l.sources, pace)
	}
	var failed map[string]error
	if s == nil {
		keep := make([]int, len(l.sources))
		for i := range keep {
			keep[i] = i
		}
		s, failed = build(l.sources, old, keep, bo)
		if len(failed) == 0 {
			failed = nil
		}
	}
	l.set.Store(s)
	if s != old {
		// The replaced index's pages leave this process now; the mapping stays valid for
		// the queries still reading it, and goes with the old Set (a cleanup).
		old.dropPages()
	}
	res := Result{Lists: s.Lists(), Failed: failed, Entries: s.Len(), Duration: time.Since(start),
		Child: useChild && childErr == nil, ChildErr: childErr}
	if l.onReload != nil {
		l.onReload(res)
	}
	return res
}
