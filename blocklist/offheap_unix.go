//go:build unix

package blocklist

import "golang.org/x/sys/unix"

// mapMemory maps n bytes of zeroed anonymous memory, or returns nil (the caller then uses the Go
// heap). Pages cost memory only once written, so a chunk's unused tail is free.
func mapMemory(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil
	}
	return b
}

func unmapMemory(b []byte) { _ = unix.Munmap(b) }
