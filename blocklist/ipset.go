package blocklist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// IP lists: one IPv4/IPv6 address or CIDR per line, an optional trailing "# comment", "#" lines
// are comments. They feed the egress sets (resolver/egress) and are read from the same kinds of
// Source as name lists (file, directory, embedded, downloaded copy), with the same keep-last-good
// reload.

// maxIPLine bounds one line of an IP list; longer lines are invalid (and skipped, not buffered).
const maxIPLine = 512

// IPList is one parsed IP list.
type IPList struct {
	Name, Category, Origin string
	// Prefixes are the list's entries, masked, sorted and with covered prefixes removed.
	Prefixes []netip.Prefix
	Invalid  int      // lines that are neither an address, a CIDR nor a comment
	Examples []string // the first few invalid lines, as "file:line: text"
}

// IPSet is an immutable set of IP lists. Its methods are safe for concurrent use.
type IPSet struct {
	lists []IPList
}

// IPHit is one list entry covering an address.
type IPHit struct {
	List   string
	Prefix netip.Prefix
}

// Lists returns the lists in source order (shared; do not modify).
func (s *IPSet) Lists() []IPList {
	if s == nil {
		return nil
	}
	return s.lists
}

// List returns the named list.
func (s *IPSet) List(name string) (IPList, bool) {
	for _, l := range s.Lists() {
		if l.Name == name {
			return l, true
		}
	}
	return IPList{}, false
}

// Lookup returns the entries covering a, one per list at most, in list order.
func (s *IPSet) Lookup(a netip.Addr) []IPHit {
	a = a.Unmap()
	var hits []IPHit
	for _, l := range s.Lists() {
		// Entries are sorted by address and none covers another, so the only candidate is the
		// last one starting at or before a.
		i, _ := slices.BinarySearchFunc(l.Prefixes, a, func(p netip.Prefix, a netip.Addr) int {
			return p.Addr().Compare(a)
		})
		for _, j := range []int{i, i - 1} {
			if j >= 0 && j < len(l.Prefixes) && l.Prefixes[j].Contains(a) {
				hits = append(hits, IPHit{List: l.Name, Prefix: l.Prefixes[j]})
				break
			}
		}
	}
	return hits
}

// Len is the number of entries over all lists.
func (s *IPSet) Len() int {
	n := 0
	for _, l := range s.Lists() {
		n += len(l.Prefixes)
	}
	return n
}

// ParseIPs reads an IP list. name labels the examples of invalid lines. A list with lines but no
// valid entry and at least one invalid line is an error wrapping ErrNoValidEntries (a server's
// error page is not an empty list); a list of comments only is a valid empty list.
func ParseIPs(r io.Reader, name string) (prefixes []netip.Prefix, invalid int, examples []string, err error) {
	br := bufio.NewReaderSize(r, 4096)
	for line := 1; ; line++ {
		text, rerr := br.ReadSlice('\n')
		long := errors.Is(rerr, bufio.ErrBufferFull) || len(text) > maxIPLine
		if errors.Is(rerr, bufio.ErrBufferFull) {
			for errors.Is(rerr, bufio.ErrBufferFull) {
				_, rerr = br.ReadSlice('\n')
			}
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return nil, invalid, examples, fmt.Errorf("%s: %w", name, rerr)
		}
		if i := bytes.IndexByte(text, '#'); i >= 0 && !long {
			text = text[:i]
		}
		text = bytes.TrimSpace(text)
		if len(text) > 0 || long {
			if p, ok := parseIPEntry(text, long); ok {
				prefixes = append(prefixes, p)
			} else {
				invalid++
				if len(examples) < maxExamples {
					examples = append(examples, fmt.Sprintf("%s:%d: %.80s", name, line, text))
				}
			}
		}
		if rerr != nil {
			break
		}
	}
	if len(prefixes) == 0 && invalid > 0 {
		return nil, invalid, examples, fmt.Errorf("%s: %w (%d invalid lines)", name, ErrNoValidEntries, invalid)
	}
	return NormalizePrefixes(prefixes), invalid, examples, nil
}

func parseIPEntry(text []byte, long bool) (netip.Prefix, bool) {
	if long {
		return netip.Prefix{}, false
	}
	s := string(text)
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() {
			return netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)).Masked(), p.Bits() >= 96
		}
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// NormalizePrefixes masks, sorts and de-duplicates ps in place and drops prefixes covered by
// another, so that no two remain overlapping (what an nftables interval set accepts).
func NormalizePrefixes(ps []netip.Prefix) []netip.Prefix {
	for i, p := range ps {
		ps[i] = p.Masked()
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits() // the wider first, so it swallows the narrower
	})
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Overlaps(p) {
			continue // sorted by start, wider first: the earlier one covers p
		}
		out = append(out, p)
	}
	return slices.Clip(out)
}

// CheckIPList vets a downloaded IP list before it replaces the cached copy (Fetcher.Check).
func CheckIPList(r io.Reader) error {
	ps, _, _, err := ParseIPs(r, "download")
	if err == nil && len(ps) == 0 {
		return fmt.Errorf("%w: no addresses", ErrNoValidEntries)
	}
	return err
}

// readIPs parses every file of the source.
func (src Source) readIPs() (IPList, error) {
	l := IPList{Name: src.Name, Category: src.Category, Origin: src.Origin()}
	files, err := src.files()
	if err != nil {
		if src.Optional && errors.Is(err, fs.ErrNotExist) {
			return l, nil
		}
		return l, fmt.Errorf("ip list %q: %w", src.Name, err)
	}
	var errs []error
	for _, p := range files {
		f, err := src.open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps, invalid, examples, err := ParseIPs(f, p)
		_ = f.Close()
		l.Prefixes = append(l.Prefixes, ps...)
		l.Invalid += invalid
		l.Examples = append(l.Examples, examples...)[:min(maxExamples, len(l.Examples)+len(examples))]
		if err != nil && (len(files) == 1 || !errors.Is(err, ErrNoValidEntries)) {
			errs = append(errs, err)
		}
	}
	if src.URL != "" && len(l.Prefixes) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%w: the downloaded copy of %s has no addresses", ErrNoValidEntries, src.URL))
	}
	l.Prefixes = NormalizePrefixes(l.Prefixes)
	if err := errors.Join(errs...); err != nil {
		return l, fmt.Errorf("ip list %q: %w", src.Name, err)
	}
	return l, nil
}

// buildIPs reads every source; a failing source keeps its list from old (if any) and is reported.
func buildIPs(sources []Source, old *IPSet) (*IPSet, map[string]error) {
	s := &IPSet{lists: make([]IPList, 0, len(sources))}
	failed := map[string]error{}
	for _, src := range sources {
		l, err := src.readIPs()
		if err != nil {
			failed[src.Name] = err
			if prev, ok := old.List(src.Name); ok {
				l = prev
			}
		}
		s.lists = append(s.lists, l)
	}
	return s, failed
}

// LoadIPs loads IP lists once (for commands that do not serve); any failing source is an error.
func LoadIPs(sources []Source) (*IPSet, error) {
	s, failed := buildIPs(sources, nil)
	if len(failed) > 0 {
		return nil, ipErr(sources, failed)
	}
	return s, nil
}

func ipErr(sources []Source, failed map[string]error) error {
	var errs []error
	for _, src := range sources {
		if err := failed[src.Name]; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// LiveIPs serves the current IPSet and reloads it from its sources, like Live for name lists.
type LiveIPs struct {
	sources []Source
	set     atomic.Pointer[IPSet]
	mu      sync.Mutex // serializes Reload
}

// NewLiveIPs loads every source; a failing source that is not Optional is an error.
func NewLiveIPs(sources []Source) (*LiveIPs, error) {
	sources = slices.Clone(sources)
	if err := checkSources(sources); err != nil {
		return nil, err
	}
	s, failed := buildIPs(sources, nil)
	for name, err := range failed {
		i := slices.IndexFunc(sources, func(src Source) bool { return src.Name == name })
		if sources[i].Optional {
			delete(failed, name)
			_ = err
		}
	}
	if len(failed) > 0 {
		return nil, ipErr(sources, failed)
	}
	l := &LiveIPs{sources: sources}
	l.set.Store(s)
	return l, nil
}

// Set returns the IPSet currently served.
func (l *LiveIPs) Set() *IPSet { return l.set.Load() }

// Sources returns the sources, in order.
func (l *LiveIPs) Sources() []Source { return slices.Clone(l.sources) }

// Reload re-reads every source and swaps in the new IPSet; a failing source keeps its last good
// entries and is returned in failed (nil if none failed).
func (l *LiveIPs) Reload() (*IPSet, map[string]error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, failed := buildIPs(l.sources, l.set.Load())
	l.set.Store(s)
	if len(failed) == 0 {
		failed = nil
	}
	return s, failed
}
