package mmsg

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSockaddrRoundTrip(t *testing.T) {
	for _, s := range []string{"192.0.2.1:53", "[2001:db8::1]:5353", "[fe80::1%7]:65535", "[::ffff:192.0.2.1]:1"} {
		ap := netip.MustParseAddrPort(s)
		var sa unix.RawSockaddrInet6
		n, err := PutSockaddr(&sa, ap)
		if err != nil {
			t.Fatal(err)
		}
		want := uint32(unix.SizeofSockaddrInet6)
		if ap.Addr().Is4() {
			want = unix.SizeofSockaddrInet4
		}
		if n != want {
			t.Errorf("%s: length %d, want %d", s, n, want)
		}
		if got := AddrPort(&sa); got != ap {
			t.Errorf("%s: read back as %s", s, got)
		}
	}
}
