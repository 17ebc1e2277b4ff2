//go:build unix && !linux

package listen

import "syscall"

// msgTrunc is the receive flag of a datagram longer than the buffer it was read into (udpio_other;
// Linux reads with recvmmsg instead).
const msgTrunc = syscall.MSG_TRUNC
