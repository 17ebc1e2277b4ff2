package blocklist

import (
	"bytes"
	"errors"
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
		entries, st, err := Parse(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrNoValidEntries) || entries != nil || st.Invalid == 0 {
				t.Fatalf("err = %v with %d entries, %d invalid", err, len(entries), st.Invalid)
			}
			return
		}
		if st.Entries != len(entries) || len(st.Examples) != min(st.Invalid, maxExamples) {
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
		s := newSet([]Source{{Name: "fuzz"}}, []parsed{{entries: entries, stats: st}})
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
