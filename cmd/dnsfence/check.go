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
	apps := listApps(cfg)
	for _, n := range names {
		if list, rule, ok := set.Match(n); ok {
			app := ""
			if a := apps[list]; a != "" {
				app = fmt.Sprintf(" (app %s)", a)
			}
			fmt.Fprintf(stdout, "%s: blocked by list %q%s, entry %q\n", n, list, app, rule)
		} else {
			fmt.Fprintf(stdout, "%s: not blocked\n", n)
		}
	}
	return nil
}
