package main

import "fmt"

// count says "1 list" or "8 lists": n with the singular or the plural form.
func count(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
