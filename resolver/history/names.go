package history

import (
	"bufio"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
)

// DeviceNames names client addresses from local records (zone-file lines), hosts files and a
// DHCP leases file (dnsmasq/OpenWrt format), read now: call it when a report is made, so a
// renamed device shows its current name. The leases file wins: it is the freshest. Unreadable
// files are skipped. Names are for reports only, never metric labels.
func DeviceNames(records, hostsFiles []string, leasesFile string) func(client string) string {
	names := map[netip.Addr]string{}
	for _, r := range records {
		if rr, err := dns.NewRR(r); err == nil && rr != nil {
			addName(names, rr)
		}
	}
	for _, p := range hostsFiles {
		if f, err := os.Open(p); err == nil {
			parseHosts(f, names)
			f.Close()
		}
	}
	if p := leasesFile; p != "" {
		if f, err := os.Open(p); err == nil {
			for a, n := range parseLeases(f) {
				names[a] = n
			}
			f.Close()
		}
	}
	return func(client string) string {
		a, err := netip.ParseAddr(client)
		if err != nil {
			return ""
		}
		return names[a.Unmap()]
	}
}

func addName(names map[netip.Addr]string, rr dns.RR) {
	ip, ok := resolver.RRAddr(rr)
	if _, seen := names[ip]; ok && !seen {
		names[ip] = strings.TrimSuffix(rr.Header().Name, ".")
	}
}

// parseHosts reads "IP name…" lines; the first name of an address wins.
func parseHosts(r io.Reader, names map[netip.Addr]string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if ip, err := netip.ParseAddr(f[0]); err == nil {
			if _, ok := names[ip.Unmap()]; !ok {
				names[ip.Unmap()] = f[1]
			}
		}
	}
}

// parseLeases reads a dnsmasq/OpenWrt leases file: "<expiry> <mac> <ip> <hostname> <client-id>",
// hostname "*" when the client sent none (skipped). Malformed lines are skipped: dnsmasq
// rewrites the file while we may read it.
func parseLeases(r io.Reader) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] == "*" {
			continue
		}
		if ip, err := netip.ParseAddr(f[2]); err == nil {
			out[ip.Unmap()] = f[3]
		}
	}
	return out
}
