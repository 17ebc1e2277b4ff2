//go:build unix

package listen

import "syscall"

// msgTrunc is the receive flag of a datagram longer than the buffer it was read into.
const msgTrunc = syscall.MSG_TRUNC
