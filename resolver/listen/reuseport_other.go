//go:build !linux

package listen

import "syscall"

// reusePortSupported: elsewhere SO_REUSEPORT does not spread datagrams over the sockets (or is
// missing), so a listener has one UDP socket.
const reusePortSupported = false

func setReusePort(_, _ string, _ syscall.RawConn) error { return nil }
