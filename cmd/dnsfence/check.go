package main

import (
	"fmt"
	"io"
)

// runCheck answers "is this name blocked, and by what?" from the configured lists, without serving.
func runCheck(args []string, stdout, stderr io.Writer) error {
	opts, names, err := parseFlags("dnsfence check", args, stderr)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		fmt.Fprintln(stderr, "dnsfence check: name at least one domain, e.g. dnsfence check alipay.com")
		return errUsage
	}
	cfg, err := loadConfig(opts)
	if err != nil {
		return err
	}
	set, _, err := loadSet(cfg)
	if err != nil {
		return err
	}
	for _, n := range names {
		if list, rule, ok := set.Match(n); ok {
			fmt.Fprintf(stdout, "%s: blocked by list %q, entry %q\n", n, list, rule)
		} else {
			fmt.Fprintf(stdout, "%s: not blocked\n", n)
		}
	}
	return nil
}
