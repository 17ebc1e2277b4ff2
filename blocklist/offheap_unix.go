//go:build unix

package blocklist

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

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

// mapFile maps the first n bytes of f read-only and shared: the pages are the page cache's, so
// they count once however many processes map them and can be dropped under memory pressure.
func mapFile(f *os.File, n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", f.Name(), err)
	}
	return b, nil
}

// dropPages removes a read-only shared file mapping's pages from the process (they stay in the
// page cache, and a later read faults them back in with the same contents).
func dropPages(b []byte) { _ = unix.Madvise(b, unix.MADV_DONTNEED) }
