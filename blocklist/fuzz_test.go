package blocklist

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"a.com\n",
		"\xef\xbb\xbfA.Com.\r\nb.org # c\r\n",
		"0.0.0.0 a.com b.com localhost\n::1 ip6-localhost\n",
		"# comment\n! comment\n\n",
		"||a.com^\n*.b.com\n/re/\n1.2.3.4\n",
		"a..b\n.\n..\n" + strings.Repeat("a", 64) + ".com\n",
		strings.Repeat("x", 5000) + "\nok.com",
		"fe80::1%eth0 x.y\n0.0.0.0\tz.\n",
		"x_y-z.0.9\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, st, err := Parse(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrNoValidEntries) || rules != nil || st.Invalid+st.Unsupported == 0 {
				t.Fatalf("err = %v with %d rules, %d invalid", err, len(rules), st.Invalid)
			}
			return
		}
		var entries []string
		for _, r := range rules {
			if r.Kind == Block {
				entries = append(entries, r.Value)
			}
		}
		if st.Rules != len(rules) || len(st.Examples) != min(st.Invalid+st.Unsupported, maxExamples) {
			t.Fatalf("inconsistent stats %+v for %d entries", st, len(entries))
		}
		if st.Lines > bytes.Count(data, []byte("\n"))+1 {
			t.Fatalf("Lines = %d for %d newlines", st.Lines, bytes.Count(data, []byte("\n")))
		}
		for _, e := range entries {
			if e == "" || len(e) > maxNameLen || e != strings.ToLower(e) || strings.HasSuffix(e, ".") || checkName([]byte(e)) != "" {
				t.Fatalf("bad entry %q", e)
			}
		}
		s := setOf("fuzz", entries)
		for _, e := range entries {
			for _, q := range []string{e, strings.ToUpper(e) + ".", "sub." + e} {
				if list, rule, ok := s.Match(q); !ok || list != "fuzz" || rule != e {
					if q == "sub."+e && len(q) > maxNameLen {
						continue // too long to be a name
					}
					t.Fatalf("Match(%q) = %q, %q, %v; want entry %q", q, list, rule, ok, e)
				}
			}
		}
	})
}

// FuzzMatch checks the compact Set against a plain map holding the same rules, with the precedence
// written out the simple way: any allow rule covering the name wins, else the most specific block.
func FuzzMatch(f *testing.F) {
	for _, seed := range []string{
		"a.com\nb.a.com\n",
		"*.a.com\n@@||ok.a.com^\nx.ok.a.com\n",
		"0.0.0.0 a.b.c d.e\n@@||*.b.c^\n",
		"a\nb\nc.a\n*.c\n",
	} {
		f.Add([]byte(seed), "x.b.a.com.")
		f.Add([]byte(seed), "b.a.com")
	}
	f.Fuzz(func(t *testing.T, data []byte, extra string) {
		rules, _, err := Parse(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		b := newBuilder(0, 1)
		// Small runs: the names are merged from several sorted runs, spilled to a file, or kept
		// on the heap when no file can be made.
		b.runMax = 1 + len(extra)%5*8
		if len(extra)%2 == 1 {
			b.dir = filepath.Join(t.TempDir(), "missing")
		}
		ref := map[string][numKinds]bool{}
		var queries []string
		for _, r := range rules {
			if r.Kind == Regexp || r.Kind == AllowRegexp {
				continue
			}
			b.add(0, r.Kind, []byte(r.Value))
			k := ref[r.Value]
			k[r.Kind] = true
			ref[r.Value] = k
			queries = append(queries, r.Value, "x."+r.Value, strings.ToUpper(r.Value)+".")
			if i := strings.IndexByte(r.Value, '.'); i > 0 {
				queries = append(queries, r.Value[i+1:])
			}
		}
		b.lists = append(b.lists, ListInfo{Name: "fuzz"})
		s := b.finish()
		if s.Len() != len(ref) {
			t.Fatalf("Len = %d, want %d distinct names", s.Len(), len(ref))
		}
		for _, q := range append(queries, extra) {
			want, wantRule := refMatch(ref, q)
			_, rule, ok := s.Match(q)
			if ok != want || rule != wantRule {
				t.Fatalf("Match(%q) = %q %v, reference %q %v", q, rule, ok, wantRule, want)
			}
		}
	})
}

func refMatch(ref map[string][numKinds]bool, q string) (bool, string) {
	q = strings.ToLower(strings.TrimSuffix(q, "."))
	if q == "" || len(q) > maxNameLen {
		return false, ""
	}
	labels := strings.Split(q, ".")
	blocked, rule := false, ""
	for i := range labels {
		suffix := strings.Join(labels[i:], ".")
		k, found := ref[suffix]
		if !found {
			continue
		}
		if k[Allow] || i > 0 && k[AllowBelow] {
			return false, ""
		}
		if !blocked && (k[Block] || i > 0 && k[BlockBelow]) {
			blocked, rule = true, suffix
			if !k[Block] {
				rule = "*." + suffix
			}
		}
	}
	return blocked, rule
}
