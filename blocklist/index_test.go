package blocklist

import (
	"fmt"
	"testing"
)

// finish compiles the builder's rules into a Set kept nowhere, for tests that build sets by hand.
func (b *builder) finish() *Set {
	s, err := b.compile("", [32]byte{})
	if err != nil {
		panic(err)
	}
	return s
}

// TestIndexBlockBoundaries: a TLD, a domain and its subdomains may start at any position of a
// block, including its last entry and the first of the next; every name is found and its
// neighbours are not.
func TestIndexBlockBoundaries(t *testing.T) {
	for filler := range 2*blockSize + 2 {
		var names []string
		for i := range filler {
			names = append(names, fmt.Sprintf("f%02d.aaa", i))
		}
		names = append(names, "dns.google", "a.dns.google", "x.y.google", "zz", "b.zz")
		s := setOf("l", names)
		for _, n := range names {
			if _, rule, ok := s.Match(n); !ok || rule != n {
				t.Fatalf("filler %d: Match(%q) = %q, %v", filler, n, rule, ok)
			}
		}
		for _, n := range []string{"google", "y.google", "ns.google", "aaa", "f99.aaa", "z"} {
			if _, rule, ok := s.Match(n); ok {
				t.Fatalf("filler %d: Match(%q) = %q, want no match", filler, n, rule)
			}
		}
	}
}
