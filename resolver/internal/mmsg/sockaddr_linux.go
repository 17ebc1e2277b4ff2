package mmsg

import (
	"net"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// AddrPort reads the address in sa (a sockaddr_in or sockaddr_in6, as recvmmsg fills it in). A
// link-local IPv6 address keeps its interface as a numeric zone, which PutSockaddr reads back.
func AddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	p := (*[2]byte)(unsafe.Pointer(&sa.Port)) // network byte order
	port := uint16(p[0])<<8 | uint16(p[1])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// PutSockaddr writes ap into sa as a sockaddr_in (IPv4) or sockaddr_in6 and returns its length.
func PutSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) (uint32, error) {
	a := ap.Addr()
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(ap.Port()>>8), byte(ap.Port())
	if a.Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family, sa4.Addr, sa4.Zero = unix.AF_INET, a.As4(), [8]uint8{}
		return unix.SizeofSockaddrInet4, nil
	}
	sa.Family, sa.Flowinfo, sa.Addr, sa.Scope_id = unix.AF_INET6, 0, a.As16(), 0
	if z := a.Zone(); z != "" {
		id, err := strconv.ParseUint(z, 10, 32)
		if err != nil {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return 0, err
			}
			id = uint64(ifi.Index)
		}
		sa.Scope_id = uint32(id)
	}
	return unix.SizeofSockaddrInet6, nil
}
