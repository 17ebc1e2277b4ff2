package upstream

import (
	"fmt"
	"strings"
)

// schemeTypo explains an upstream like "tls//1.1.1.1" or "tls:/1.1.1.1", which would otherwise be
// read as a bare address and rejected as "not an IP address".
func schemeTypo(s string) error {
	for _, scheme := range []string{"udp", "tcp", "tls", "https"} {
		rest, ok := strings.CutPrefix(s, scheme)
		if !ok {
			continue
		}
		if host, ok := strings.CutPrefix(rest, "//"); ok {
			return fmt.Errorf("upstream %q: missing \":\" after %q (want %s://%s)", s, scheme, scheme, host)
		}
		if host, ok := strings.CutPrefix(rest, ":/"); ok {
			return fmt.Errorf("upstream %q: missing \"/\" after %q (want %s://%s)", s, scheme+":", scheme, host)
		}
	}
	return nil
}
