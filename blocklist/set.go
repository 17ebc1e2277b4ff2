package blocklist

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"slices"
)

// Source is one named list read from a file.
type Source struct {
	Name string // list name; used as a metric label and in logs
	Path string
	FS   fs.FS // nil: the OS file system; else Path is an fs.FS path
}

// ListInfo describes one list of a Set.
type ListInfo struct {
	Name string
	// Entries counts the distinct entries this list contributes to the Set.
	// An entry also present in an earlier list is counted there only, so the
	// sum over lists equals Set.Len.
	Entries  int
	Invalid  int      // rejected lines or names, see Stats.Invalid
	Examples []string // the first few rejections, see Stats.Examples
}

// Set is an immutable set of blocked domains, safe for concurrent use.
type Set struct {
	// index maps an entry to its position in the concatenation of entries;
	// the first list containing an entry owns it. A position rather than a
	// list number lets Match return the stored entry without allocating, at
	// no extra cost: a string key pads a uint16 value to 8 bytes anyway.
	index   map[string]ref
	entries [][]string // per list, as parsed; the map keys share these strings
	start   []int      // start[i] is the position of entries[i][0]; one extra at the end
	lists   []ListInfo
}

// ref locates an entry: pos in the concatenation of entries (of its first list, whose copy of the
// text Match returns) and the lists that contain it, one bit per list (the first 64 lists).
type ref struct {
	pos   int
	lists uint64
}

// MaxMaskedLists is how many lists MatchIn can select among.
const MaxMaskedLists = 64

// ListMask selects lists by position (bit i is the i-th source) for MatchIn.
type ListMask = uint64

// parsed is one source's last good parse.
type parsed struct {
	entries []string
	stats   Stats
}

func newSet(sources []Source, ps []parsed) *Set {
	total := 0
	for _, p := range ps {
		total += len(p.entries)
	}
	s := &Set{
		index:   make(map[string]ref, total),
		entries: make([][]string, len(ps)),
		start:   make([]int, len(ps)+1),
		lists:   make([]ListInfo, len(ps)),
	}
	pos := 0
	for i, p := range ps {
		s.entries[i] = p.entries
		s.start[i] = pos
		owned := 0
		var bit uint64
		if i < MaxMaskedLists {
			bit = 1 << i
		}
		for _, e := range p.entries {
			if r, dup := s.index[e]; dup {
				r.lists |= bit
				s.index[e] = r
			} else {
				s.index[e] = ref{pos: pos, lists: bit}
				owned++
			}
			pos++
		}
		s.lists[i] = ListInfo{
			Name:     sources[i].Name,
			Entries:  owned,
			Invalid:  p.stats.Invalid,
			Examples: p.stats.Examples,
		}
	}
	s.start[len(ps)] = pos
	return s
}

// Match reports whether name or one of its parent domains is in the set, and
// if so the list and entry that matched; the longest matching entry wins.
// name may be mixed case and have a trailing dot. Match does not allocate and
// does one map lookup per label of name, whatever the size of the set.
// A nil Set matches nothing.
func (s *Set) Match(name string) (list, rule string, ok bool) {
	return s.match(name, 0, false)
}

// MatchIn is Match restricted to the lists in mask (bit i: the i-th source; only the first
// MaxMaskedLists lists can be selected). An entry found in several selected lists is reported for
// the first of them.
func (s *Set) MatchIn(name string, mask ListMask) (list, rule string, ok bool) {
	return s.match(name, mask, true)
}

func (s *Set) match(name string, mask ListMask, masked bool) (list, rule string, ok bool) {
	if s == nil || len(s.index) == 0 {
		return "", "", false
	}
	n := len(name)
	if n > 0 && name[n-1] == '.' {
		n--
	}
	if n == 0 || n > maxNameLen {
		return "", "", false // the root, or too long to equal any entry
	}
	var buf [maxNameLen]byte
	for i := range n {
		buf[i] = lower(name[i])
	}
	// Suffixes from the longest down, so the first hit is the most specific.
	for i := 0; ; {
		if r, found := s.index[string(buf[i:n])]; found && (!masked || r.lists&mask != 0) {
			owner := s.listAt(r.pos)
			rule := s.entries[owner][r.pos-s.start[owner]]
			if !masked {
				return s.lists[owner].Name, rule, true
			}
			return s.lists[bits.TrailingZeros64(r.lists&mask)].Name, rule, true
		}
		dot := bytes.IndexByte(buf[i:n], '.')
		if dot < 0 {
			return "", "", false
		}
		i += dot + 1
	}
}

// listAt returns the list whose entries hold position pos.
func (s *Set) listAt(pos int) int {
	lo, hi := 0, len(s.lists)-1
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		if s.start[mid] <= pos {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// Len returns the number of distinct entries.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.index)
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

// Load reads every source and builds a Set. Any source that cannot be read or
// parsed is an error naming it; errors of all sources are joined, and the Set
// is nil.
func Load(sources []Source) (*Set, []ListInfo, error) {
	ps, err := loadAll(sources)
	if err != nil {
		return nil, nil, err
	}
	s := newSet(sources, ps)
	return s, s.Lists(), nil
}

func loadAll(sources []Source) ([]parsed, error) {
	if err := checkSources(sources); err != nil {
		return nil, err
	}
	ps := make([]parsed, len(sources))
	var errs []error
	for i, src := range sources {
		p, err := src.read()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps[i] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ps, nil
}

// checkSources rejects names that would make metrics and results ambiguous.
func checkSources(sources []Source) error {
	seen := make(map[string]bool, len(sources))
	var errs []error
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

// read opens and parses the source; errors name the list.
func (src Source) read() (parsed, error) {
	var (
		f   fs.File
		err error
	)
	if src.FS != nil {
		f, err = src.FS.Open(src.Path)
	} else {
		f, err = os.Open(src.Path)
	}
	if err != nil {
		return parsed{}, fmt.Errorf("blocklist %q: %w", src.Name, err)
	}
	defer f.Close()
	entries, st, err := Parse(f, src.Path)
	if err != nil {
		return parsed{}, fmt.Errorf("blocklist %q: %w", src.Name, err)
	}
	return parsed{entries: entries, stats: st}, nil
}
