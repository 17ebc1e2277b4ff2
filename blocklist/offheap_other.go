//go:build !unix

package blocklist

import "os"

// mapMemory is not available here: indexes live on the Go heap.
func mapMemory(int) []byte { return nil }

func unmapMemory([]byte) {}

// mapFile is not available here: the caller reads the file instead.
func mapFile(*os.File, int) ([]byte, error) { return nil, nil }

func dropPages([]byte) {}
