//go:build !unix

package listen

// msgTrunc is the receive flag of a datagram longer than the buffer it was read into; elsewhere
// (Windows) such a read fails instead.
const msgTrunc = 0
