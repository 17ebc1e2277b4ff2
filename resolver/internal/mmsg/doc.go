// Package mmsg makes recvmmsg and sendmmsg calls on a Go socket without allocating per call, for
// the UDP listener and the upstream sockets. Linux only; elsewhere it is empty and callers read
// and write one datagram per system call.
package mmsg
