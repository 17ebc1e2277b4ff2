package upstream_test

import (
	"strings"
	"testing"

	"github.com/dnsfence/dnsfence/resolver/upstream"
)

// TestParseUpstreamSaysWhatToDo: a rejected upstream says how to write it instead.
func TestParseUpstreamSaysWhatToDo(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"dns.google", `"dns.google" is not an IP address: plain udp:// and tcp:// upstreams need one; for a host name use DNS over TLS or HTTPS, e.g. tls://dns.google`},
		{"tcp://resolver.example:53", "e.g. tls://resolver.example (resolved through bootstrap servers)"},
		{"tls//1.1.1.1", `upstream "tls//1.1.1.1": missing ":" after "tls" (want tls://1.1.1.1)`},
		{"https//dns.example/dns-query", `missing ":" after "https" (want https://dns.example/dns-query)`},
		{"udp:/192.0.2.1", `missing "/" after "udp:" (want udp://192.0.2.1)`},
	} {
		_, err := upstream.Parse(tc.in, upstream.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want it to say %q", tc.in, err, tc.want)
		}
	}
}
