package blocklist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Source is one named list: a file, or a directory whose regular files are read in name order.
type Source struct {
	Name     string // list name; used as a metric label and in logs
	Category string // free-form grouping shown by check and explain (e.g. ads, malware, apps)
	Path     string // file or directory; for a URL list, the downloaded copy
	FS       fs.FS  // nil: the OS file system; else Path is an fs.FS path
	URL      string // for a URL list, where Path was downloaded from (shown by Explain)
	// Allow makes it an allowlist: every rule in it allows instead of blocks.
	Allow bool
	// Optional makes a missing Path an empty list rather than an error: a URL list whose first
	// download has not succeeded yet.
	Optional bool
}

// Origin is where the list comes from, for people: its URL, else its path.
func (src Source) Origin() string {
	if src.URL != "" {
		return src.URL
	}
	return src.Path
}

// ListInfo describes one list of a Set.
type ListInfo struct {
	Name     string
	Category string
	Origin   string
	Allow    bool
	// Entries counts the distinct names this list contributes to the Set. A name also present in
	// an earlier list is counted there only, so the sum over lists equals Set.Len.
	Entries     int
	Rules       [numKinds]int // rules by kind, duplicates included
	Invalid     int           // rejected lines or names, see Stats.Invalid
	Unsupported int           // see Stats.Unsupported
	Examples    []string      // the first few rejections, see Stats.Examples
	Files       int           // files read (a directory list has several)
}

// RulesByKind returns the rule counts by kind name, zeros included (a kind that a reload emptied
// must read 0, not its old count), for logs and metrics.
func (l ListInfo) RulesByKind() map[string]int {
	m := map[string]int{}
	for k, n := range l.Rules {
		m[Kind(k).String()] = n
	}
	return m
}

// Set is an immutable set of rules from several lists, safe for concurrent use.
type Set struct {
	ix       *index
	attrs    []attr // attrs[0] is the zero attr; in ix's region
	regexps  []regexRule
	lists    []ListInfo
	hasAllow bool // any allow rule: a block hit must look further for one
}

// attr says which lists hold which kinds of rule for one name, one bit per list.
type attr struct {
	block, below, allow, allowBelow uint64
}

func (a *attr) set(k Kind, bit uint64) {
	switch k {
	case Block:
		a.block |= bit
	case BlockBelow:
		a.below |= bit
	case Allow:
		a.allow |= bit
	case AllowBelow:
		a.allowBelow |= bit
	}
}

func (a attr) any() uint64 { return a.block | a.below | a.allow | a.allowBelow }

type regexRule struct {
	list int
	kind Kind
	re   *regexp.Regexp
	expr string // the expression
	rule string // as written: "/expr/"
}

// caseless makes rule expressions match names in any case, as DNS names compare.
const caseless = "(?i)"

func compileRule(expr string) (*regexp.Regexp, error) { return regexp.Compile(caseless + expr) }

// MaxLists is how many lists a Set can hold: a rule's lists are a 64-bit mask.
const MaxLists = 64

// MaxMaskedLists is how many lists MatchIn can select among (all of them).
const MaxMaskedLists = MaxLists

// ListMask selects lists by position (bit i is the i-th source) for MatchIn.
type ListMask = uint64

const allLists ListMask = 1<<64 - 1

// Match reports whether name is blocked: a block rule covers it (the longest matching name wins;
// regular expressions are tried only when no name matches) and no allow rule does. It returns the
// list and rule that decided. name may be mixed case and have a trailing dot. Match does one table
// lookup per label of name, whatever the size of the set, and allocates nothing except when a
// "*.d" rule matches. A nil Set matches nothing.
func (s *Set) Match(name string) (list, rule string, ok bool) {
	return s.match(name, allLists)
}

// MatchIn is Match restricted to the block rules of the lists in mask (bit i: the i-th source).
// Allow rules apply whatever the mask. A rule found in several selected lists is reported for
// the first of them.
func (s *Set) MatchIn(name string, mask ListMask) (list, rule string, ok bool) {
	return s.match(name, mask)
}

func (s *Set) match(name string, mask ListMask) (list, rule string, ok bool) {
	if s == nil || s.ix.n == 0 && len(s.regexps) == 0 {
		return "", "", false
	}
	var buf [maxNameLen]byte
	q, ok := lowerName(&buf, name)
	if !ok {
		return "", "", false
	}
	// Walk the name from its last label to its first: each step looks up one more label of the
	// reversed name, and the walk ends where no rule continues it. A longer (more specific) block
	// rule replaces a shorter one; any allow rule on the way wins at once.
	var key [maxNameLen]byte
	hit, hitAt, below := -1, 0, false
	for end, klen, blk, level := len(q), 0, 0, 0; ; level++ {
		start := bytes.LastIndexByte(q[:end], '.') + 1
		klen = appendLabel(&key, klen, q[start:end])
		var ai uint16
		var found, more bool
		ai, found, more, blk = s.ix.step(key[:klen], level, blk)
		if found {
			a := &s.attrs[ai]
			blocks, allows := a.block, a.allow
			if start > 0 { // q is below this name
				blocks |= a.below
				allows |= a.allowBelow
			}
			if allows != 0 {
				return "", "", false
			}
			if blocks&mask != 0 {
				hit, hitAt = bits.TrailingZeros64(blocks&mask), start
				below = a.block&mask&(1<<hit) == 0
			}
		}
		if !more || start == 0 {
			break
		}
		end = start - 1
	}
	// Expressions see the name as given (they are compiled case-insensitive): matching the
	// lowered copy would move its buffer to the heap.
	name = name[:len(q)]
	if hit >= 0 {
		if s.allowedByRegexp(name) {
			return "", "", false
		}
		// The rule is the name's suffix from hitAt: taken from the caller's string when it is
		// in lower case already (no allocation), never from the table's memory, which is
		// unmapped once the set is replaced.
		rule := name[hitAt:]
		if rule != string(q[hitAt:]) {
			rule = string(q[hitAt:])
		}
		if below {
			rule = "*." + rule
		}
		return s.lists[hit].Name, rule, true
	}
	for _, r := range s.regexps {
		if r.kind == Regexp && mask&(1<<r.list) != 0 && r.re.MatchString(name) {
			if s.allowedByRegexp(name) {
				return "", "", false
			}
			return s.lists[r.list].Name, r.rule, true
		}
	}
	return "", "", false
}

func (s *Set) allowedByRegexp(name string) bool {
	for _, r := range s.regexps {
		if r.kind == AllowRegexp && r.re.MatchString(name) {
			return true
		}
	}
	return false
}

// lowerName copies name into buf, lowercased and without a trailing dot; ok is false for names
// no entry can equal (the root, empty, too long).
func lowerName(buf *[maxNameLen]byte, name string) ([]byte, bool) {
	n := len(name)
	if n > 0 && name[n-1] == '.' {
		n--
	}
	if n == 0 || n > maxNameLen {
		return nil, false
	}
	for i := range n {
		buf[i] = lower(name[i])
	}
	return buf[:n], true
}

// Hit is one rule that matches a name.
type Hit struct {
	List     string
	Category string
	Origin   string // the list's URL or path
	Kind     Kind
	Rule     string // as written in a list: "a.com", "*.a.com", "@@||a.com^", "/re/"
	// File and Line locate the rule in the list's files; filled in by Live.Explain.
	File string
	Line int

	value string // the name or expression, as stored
}

// Explanation says why a name is blocked or not.
type Explanation struct {
	Name    string
	Blocked bool
	// Decided is the rule that blocks the name (nil if not blocked); Overridden, the allow rule
	// that let it through although block rules match (nil if none).
	Decided    *Hit
	Overridden *Hit
	// Hits is every rule that matches, most specific name first, regular expressions last.
	Hits []Hit
}

// Explain lists every rule of the set that matches name and says which decides; it follows the
// same precedence as Match: an allow rule wins over any block rule; among block rules the most
// specific name wins, and regular expressions count only when no name matches.
func (s *Set) Explain(name string) Explanation {
	e := Explanation{Name: strings.TrimSuffix(strings.ToLower(name), ".")}
	if s == nil {
		return e
	}
	var buf [maxNameLen]byte
	q, ok := lowerName(&buf, name)
	if !ok {
		return e
	}
	hit := func(list int, k Kind, v string) Hit {
		l := s.lists[list]
		return Hit{List: l.Name, Category: l.Category, Origin: l.Origin, Kind: k, Rule: formatRule(k, v), value: v}
	}
	var named, regexps []Hit
	var key [maxNameLen]byte
	for end, klen, blk, level := len(q), 0, 0, 0; ; level++ {
		start := bytes.LastIndexByte(q[:end], '.') + 1
		klen = appendLabel(&key, klen, q[start:end])
		var ai uint16
		var found, more bool
		ai, found, more, blk = s.ix.step(key[:klen], level, blk)
		if found {
			a := s.attrs[ai]
			v := string(q[start:]) // the stored name is this suffix of the query
			var level []Hit
			add := func(k Kind, m uint64) {
				for ; m != 0; m &= m - 1 {
					level = append(level, hit(bits.TrailingZeros64(m), k, v))
				}
			}
			add(Allow, a.allow)
			add(Block, a.block)
			if start > 0 {
				add(AllowBelow, a.allowBelow)
				add(BlockBelow, a.below)
			}
			named = append(level, named...) // most specific first
		}
		if !more || start == 0 {
			break
		}
		end = start - 1
	}
	for _, r := range s.regexps {
		if r.re.Match(q) {
			regexps = append(regexps, hit(r.list, r.kind, strings.TrimPrefix(r.re.String(), caseless)))
		}
	}
	e.Hits = append(named, regexps...)
	// The same precedence as match: any allow rule wins; the most specific named block rule
	// decides, and a block expression only when no named block rule matches.
	var block, allow *Hit
	for i := range e.Hits {
		h := &e.Hits[i]
		switch {
		case h.Kind.IsAllow():
			if allow == nil {
				allow = h
			}
		case block == nil:
			block = h
		}
	}
	if block == nil {
		return e
	}
	e.Overridden = allow
	if allow == nil {
		e.Blocked, e.Decided = true, block
	}
	return e
}

// Len returns the number of distinct names (regular expressions not included).
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.ix.n
}

// Bytes is the memory the set's table and names hold.
func (s *Set) Bytes() int {
	if s == nil {
		return 0
	}
	return s.ix.bytes()
}

// Lists describes each list, in source order. The result is a copy.
func (s *Set) Lists() []ListInfo {
	if s == nil {
		return nil
	}
	out := slices.Clone(s.lists)
	for i := range out {
		out[i].Examples = slices.Clone(out[i].Examples)
	}
	return out
}

// Load reads every source and builds a Set. Any source that cannot be read or parsed is an error
// naming it (an Optional source whose file is missing is an empty list); errors of all sources
// are joined, and the Set is nil.
func Load(sources []Source) (*Set, []ListInfo, error) {
	if err := checkSources(sources); err != nil {
		return nil, nil, err
	}
	s, failed := build(sources, nil, nil, buildOptions{})
	if len(failed) > 0 {
		errs := make([]error, 0, len(failed))
		for _, src := range sources {
			if err, ok := failed[src.Name]; ok {
				errs = append(errs, err)
			}
		}
		return nil, nil, errors.Join(errs...)
	}
	return s, s.Lists(), nil
}

// checkSources rejects names that would make metrics and results ambiguous.
func checkSources(sources []Source) error {
	var errs []error
	if len(sources) > MaxLists {
		errs = append(errs, fmt.Errorf("%d lists configured; at most %d are supported (merge lists into a directory list)", len(sources), MaxLists))
	}
	seen := make(map[string]bool, len(sources))
	for i, src := range sources {
		switch {
		case src.Name == "":
			errs = append(errs, fmt.Errorf("blocklist source %d (%s): empty name", i, src.Path))
		case seen[src.Name]:
			errs = append(errs, fmt.Errorf("blocklist %q: duplicate name", src.Name))
		}
		seen[src.Name] = true
	}
	return errors.Join(errs...)
}

// build makes a Set from sources. A source that fails is reported in failed and, when old is
// given, keeps what it had in old (keep maps a source index to its index in old, -1 for none).
// Reading a list can fail halfway (a read error after some rules were added); the build then
// starts over with that list marked failed, so a Set never holds part of a list. With opt.path
// set and no source failed, the index is also kept there (see Live's persisted index).
func build(sources []Source, old *Set, keep []int, opt buildOptions) (*Set, map[string]error) {
	failed := map[string]error{}
	for {
		b := newBuilder(0, len(sources))
		b.dir, b.pace = opt.dir, opt.pace
		restart := false
		for i, src := range sources {
			info := ListInfo{Name: src.Name, Category: src.Category, Origin: src.Origin(), Allow: src.Allow}
			if failed[src.Name] == nil {
				st, files, err := src.read(func(k Kind, v []byte, _ int) { b.add(i, k, v) })
				info.Rules, info.Invalid, info.Unsupported, info.Examples, info.Files = st.Kinds, st.Invalid, st.Unsupported, st.Examples, files
				if err != nil {
					failed[src.Name] = err
					if st.Rules > 0 { // part of it is in b
						restart = true
						break
					}
				}
			}
			if failed[src.Name] != nil {
				info = ListInfo{Name: src.Name, Category: src.Category, Origin: src.Origin(), Allow: src.Allow}
				if old != nil && keep != nil && keep[i] >= 0 {
					b.copyList(old, keep[i], i)
					info = old.lists[keep[i]]
				}
			}
			b.lists = append(b.lists, info)
		}
		if restart {
			b.discard()
			continue
		}
		path := opt.path
		if len(failed) > 0 {
			path = "" // the index would not be what the sources' hash says
		}
		s, err := b.compile(path, opt.hash)
		if err != nil && path != "" {
			// Keeping the index is an optimization: build again without it.
			opt.path = ""
			if opt.onError != nil {
				opt.onError(err)
			}
			continue
		}
		if err != nil {
			// The build itself failed (a spill file that cannot be read back): report it on
			// every list, keeping the old rules where there are some.
			if old == nil {
				for _, src := range sources {
					failed[src.Name] = err
				}
				return emptySet(sources), failed
			}
			for _, src := range sources {
				failed[src.Name] = err
			}
			return old, failed
		}
		return s, failed
	}
}

// buildOptions say where a build may write (spill runs, the index file) and whether to keep the
// index for the next start.
type buildOptions struct {
	dir     string   // temporary files; "" is os.TempDir()
	path    string   // keep the index here; "" does not keep it
	hash    [32]byte // the sources' content hash, stored in a kept index
	onError func(error)
	pace    *pacer // yields during a reload; nil for the first load
}

// emptySet is a Set with no rules, for a build that could not complete.
func emptySet(sources []Source) *Set {
	b := newBuilder(0, len(sources))
	for _, src := range sources {
		b.lists = append(b.lists, ListInfo{Name: src.Name, Category: src.Category, Origin: src.Origin(), Allow: src.Allow})
	}
	s, err := b.compile("", [32]byte{})
	if err != nil {
		return &Set{ix: &index{}, attrs: []attr{{}}, lists: b.lists}
	}
	return s
}

// files lists what to read: the file itself, or a directory's regular files in name order
// (hidden files, such as a ConfigMap's ..data entries and editors' temporary files, skipped).
func (src Source) files() ([]string, error) {
	var (
		fi  fs.FileInfo
		err error
	)
	if src.FS != nil {
		fi, err = fs.Stat(src.FS, src.Path)
	} else {
		fi, err = os.Stat(src.Path)
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{src.Path}, nil
	}
	var entries []fs.DirEntry
	if src.FS != nil {
		entries, err = fs.ReadDir(src.FS, src.Path)
	} else {
		entries, err = os.ReadDir(src.Path)
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(src.Path, e.Name())
		if src.FS != nil {
			p = path.Join(src.Path, e.Name())
		}
		// Follow symlinks (ConfigMap keys are links into ..data): stat, not the entry's type.
		var fi fs.FileInfo
		if src.FS != nil {
			fi, err = fs.Stat(src.FS, p)
		} else {
			fi, err = os.Stat(p)
		}
		if err == nil && fi.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	return out, nil
}

// exists reports whether the source's path is there.
func (src Source) exists() bool {
	_, err := src.files()
	return err == nil
}

func (src Source) open(p string) (io.ReadCloser, error) {
	if src.FS != nil {
		return src.FS.Open(p)
	}
	return os.Open(p)
}

// read parses every file of the source, calling emit for each rule (Allow sources turn every rule
// into an allow rule). Errors name the list.
func (src Source) read(emit emitFunc) (Stats, int, error) {
	files, err := src.files()
	if err != nil {
		if src.Optional && errors.Is(err, fs.ErrNotExist) {
			return Stats{}, 0, nil
		}
		return Stats{}, 0, fmt.Errorf("blocklist %q: %w", src.Name, err)
	}
	if src.Allow {
		inner := emit
		emit = func(k Kind, v []byte, line int) { inner(k.allowing(), v, line) }
	}
	var total Stats
	var errs []error
	for _, p := range files {
		st, err := src.readFile(p, emit)
		total.Lines += st.Lines
		total.Rules += st.Rules
		for k := range st.Kinds {
			total.Kinds[k] += st.Kinds[k]
		}
		total.Invalid += st.Invalid
		total.Unsupported += st.Unsupported
		total.Examples = append(total.Examples, st.Examples...)[:min(maxExamples, len(total.Examples)+len(st.Examples))]
		if err != nil && (len(files) == 1 || !errors.Is(err, ErrNoValidEntries)) {
			errs = append(errs, err) // in a directory, one file of comments only is not an error
		}
	}
	if src.URL != "" && total.Rules == 0 && len(errs) == 0 {
		// A download that came back empty (a server error page, a truncated body) must not
		// replace a good list with nothing.
		errs = append(errs, fmt.Errorf("%w: the downloaded copy of %s has no rules", ErrNoValidEntries, src.URL))
	}
	if src.Allow {
		var kinds [numKinds]int
		for k, n := range total.Kinds {
			kinds[Kind(k).allowing()] += n
		}
		total.Kinds = kinds
	}
	if err := errors.Join(errs...); err != nil {
		return total, len(files), fmt.Errorf("blocklist %q: %w", src.Name, err)
	}
	return total, len(files), nil
}

func (src Source) readFile(p string, emit emitFunc) (Stats, error) {
	f, err := src.open(p)
	if err != nil {
		return Stats{}, err
	}
	defer f.Close()
	return scan(f, p, emit)
}

// locate finds the file and line of a rule in the source, reading it again: explaining is rare,
// and keeping a line number per entry would cost memory on every entry.
func (src Source) locate(k Kind, value string) (string, int) {
	files, err := src.files()
	if err != nil {
		return "", 0
	}
	for _, p := range files {
		f, err := src.open(p)
		if err != nil {
			continue
		}
		line := 0
		_, _ = scan(f, p, func(rk Kind, v []byte, l int) {
			if src.Allow {
				rk = rk.allowing()
			}
			if line == 0 && rk == k && string(v) == value {
				line = l
			}
		})
		f.Close()
		if line > 0 {
			return p, line
		}
	}
	return "", 0
}
