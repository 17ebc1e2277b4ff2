package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/dnsfence/dnsfence/configs"
	"github.com/dnsfence/dnsfence/resolver/history"
)

// maxReportClients bounds the clients the report tracks one by one (about 200 bytes each).
const maxReportClients = 10000

// runReport fetches the report from a running dnsfence's HTTP listener.
func runReport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dnsfence report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", "127.0.0.1:9253", "the running dnsfence's HTTP `host:port`")
	asJSON := fs.Bool("json", false, "print JSON")
	top := fs.Int("top", 20, "how many top `clients` to show")
	tokenFile := fs.String("token-file", "", "`file` with the server's http.token, if it has one")
	hist := addHistoryFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: dnsfence report [-http host:port] [-json] [-top N] [-token-file FILE]\n"+
			"       dnsfence report -since AGE [-app ID] [-client ADDR] [-json|-csv] [-config FILE]\n\n"+
			"Attempts per app and top clients since the server started (from its /report endpoint); with any\n"+
			"of -since, -app, -client, -csv or -config, the persisted history read from the store itself.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if hist.set() {
		return runHistoryReport(hist, *asJSON, stdout)
	}
	q := url.Values{"top": {strconv.Itoa(*top)}}
	if *asJSON {
		q.Set("format", "json")
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+*addr+"/report?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if *tokenFile != "" {
		tok, err := (&configs.Config{HTTP: configs.HTTPConfig{TokenFile: *tokenFile}}).HTTPToken()
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("report: %w (is dnsfence running with http.listen %s?)", err, *addr)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return reportStatusError(resp)
	}
	_, err = io.Copy(stdout, resp.Body)
	return err
}

// historyFlags are the report subcommand's flags that read the store directly.
type historyFlags struct {
	since, app, client, config *string
	csv                        *bool
}

func addHistoryFlags(fs *flag.FlagSet) historyFlags {
	return historyFlags{
		since:  fs.String("since", "", "read the history store: attempts in the last `age` (7d, 2w, 36h)"),
		app:    fs.String("app", "", "with the history: only this `app` id"),
		client: fs.String("client", "", "with the history: only this client `address` (as stored)"),
		config: fs.String("config", "", "with the history: the dnsfence config `file` naming the store (default: built-in)"),
		csv:    fs.Bool("csv", false, "with the history: print CSV"),
	}
}

// set reports whether any history flag was given: the report then reads the store itself
// (works with the server stopped) instead of asking the running server's /report.
func (h historyFlags) set() bool {
	return *h.since != "" || *h.app != "" || *h.client != "" || *h.config != "" || *h.csv
}

// runHistoryReport reads the store named by the config and prints the summary.
func runHistoryReport(h historyFlags, asJSON bool, stdout io.Writer) error {
	cfg, err := loadConfig(&options{config: *h.config})
	if err != nil {
		return err
	}
	if !cfg.HistoryEnabled() {
		return errors.New("report: history is off in this config (history.enabled: false)")
	}
	since := 7 * 24 * time.Hour
	if *h.since != "" {
		if since, err = history.ParseAge(*h.since); err != nil {
			return fmt.Errorf("report: -since %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := cfg.OpenHistory(ctx, true, nil)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer s.Close()
	sum, err := history.Report(ctx, s, history.Filter{Since: time.Now().Add(-since), App: *h.app, Client: *h.client}, deviceNames(cfg))
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	switch {
	case asJSON:
		return sum.WriteJSON(stdout)
	case *h.csv:
		return sum.WriteCSV(stdout)
	}
	return sum.WriteText(stdout)
}
