//go:build !unix

package blocklist

// mapMemory is not available here: tables live on the Go heap.
func mapMemory(int) []byte { return nil }

func unmapMemory([]byte) {}
