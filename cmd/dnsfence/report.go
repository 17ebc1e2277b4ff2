package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/dnsfence/dnsfence/configs"
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
