package history

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeviceNames(t *testing.T) {
	dir := t.TempDir()
	leases := writeTestFile(t, dir, "dhcp.leases", `1764700000 aa:bb:cc:dd:ee:01 192.168.1.20 phone-anna 01:aa:bb:cc:dd:ee:01
1764700000 aa:bb:cc:dd:ee:02 192.168.1.21 * *
garbage
1764700000 aa:bb:cc:dd:ee:03 192.168.1.10 nas-dhcp *
`)
	hosts := writeTestFile(t, dir, "hosts", "# comment\n192.168.1.10 nas nas.home.arpa\n2001:db8::5 printer\n")
	name := DeviceNames([]string{"tv.home.arpa. 300 IN A 192.168.1.30", "x.home.arpa. 300 IN TXT \"hi\""},
		[]string{hosts}, leases)
	for client, want := range map[string]string{
		"192.168.1.20": "phone-anna", "192.168.1.21": "", "192.168.1.30": "tv.home.arpa",
		"192.168.1.10": "nas-dhcp", // the leases file wins: it is the freshest
		"2001:db8::5":  "printer", "::ffff:192.168.1.20": "phone-anna", "": "", "192.168.1.0": "",
	} {
		if got := name(client); got != want {
			t.Errorf("name(%q) = %q, want %q", client, got, want)
		}
	}
	if got := parseLeases(strings.NewReader("1 m 192.168.1.2 a\n")); got[netip.MustParseAddr("192.168.1.2")] != "a" {
		t.Errorf("parseLeases: %v", got)
	}
}

func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
