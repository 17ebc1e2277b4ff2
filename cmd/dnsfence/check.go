package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/dnsfence/dnsfence/blocklist"
)

// runCheck answers "is this name blocked, and by what?" from the configured lists, without serving
// (URL lists are read from their cached download).
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
	lists, err := blocklist.NewLive(cfg.ListSources(cfg.Fetcher("dnsfence/"+version)), nil)
	if err != nil {
		return cfg.ListLoadError(err)
	}
	for name, err := range lists.Initial().Failed {
		fmt.Fprintf(stderr, "dnsfence check: list %s: %v\n", name, err)
	}
	apps := cfg.ListApps()
	for _, n := range names {
		if ok, err := writeIPCheck(stdout, cfg, n); ok || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		writeExplanation(stdout, lists.Explain(n), apps)
	}
	return nil
}

// writeExplanation prints the verdict on one line, then every matching rule with where it is
// written, marking the one that decided and the allow rule that overrode the blocks.
func writeExplanation(w io.Writer, e blocklist.Explanation, apps map[string]string) {
	switch {
	case e.Blocked:
		fmt.Fprintf(w, "%s: blocked by list %q%s, rule \"%s\"\n", e.Name, e.Decided.List, appNote(apps, e.Decided.List), e.Decided.Rule)
	case e.Overridden != nil:
		fmt.Fprintf(w, "%s: not blocked: allowed by list %q, rule \"%s\", over the block rules below\n", e.Name, e.Overridden.List, e.Overridden.Rule)
	default:
		fmt.Fprintf(w, "%s: not blocked\n", e.Name)
	}
	for i := range e.Hits {
		h := &e.Hits[i]
		mark := " "
		switch {
		case e.Decided != nil && *h == *e.Decided:
			mark = "*"
		case e.Overridden != nil && *h == *e.Overridden:
			mark = "+"
		}
		where := h.Origin
		if h.File != "" {
			where = fmt.Sprintf("%s:%d", h.File, h.Line)
			if h.Origin != h.File && !strings.HasPrefix(h.File, h.Origin) {
				where += " (" + h.Origin + ")"
			}
		}
		cat := ""
		if h.Category != "" {
			cat = ", category " + h.Category
		}
		fmt.Fprintf(w, "  %s %-12s %-28s list %s%s%s  %s\n", mark, h.Kind, h.Rule, h.List, appNote(apps, h.List), cat, where)
	}
}

func appNote(apps map[string]string, list string) string {
	if a := apps[list]; a != "" {
		return fmt.Sprintf(" (app %s)", a)
	}
	return ""
}
