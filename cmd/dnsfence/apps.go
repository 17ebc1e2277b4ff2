package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/configs"
)

// runApps prints the curated app lists: id, app, vendor, entries and sources.
func runApps(stdout io.Writer) error {
	apps, err := configs.Apps()
	if err != nil {
		return err
	}
	// Each list alone: an entry shared by two apps (tenpay.com) counts for both.
	entries := make([]int, len(apps))
	for i, a := range apps {
		set, _, err := blocklist.Load([]blocklist.Source{{Name: a.ID, Path: a.Path, FS: configs.Lists()}})
		if err != nil {
			return err
		}
		entries[i] = set.Len()
	}
	fmt.Fprintln(stdout, "Curated lists for the eight apps of US Executive Order 13971 (revoked by EO 14034;")
	fmt.Fprintln(stdout, "blocking them is a policy choice). Enable them with `apps:` in the config.")
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAPP\tVENDOR\tENTRIES")
	for i, a := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", a.ID, a.Name, a.Vendor, entries[i])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, a := range apps {
		fmt.Fprintf(stdout, "\n%s sources:\n  %s\n", a.ID, strings.Join(a.Sources, "\n  "))
	}
	return nil
}
