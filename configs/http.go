package configs

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// HTTPToken is the admin API token: http.token, or the first line of http.token_file.
func (c *Config) HTTPToken() (string, error) {
	if c.HTTP.TokenFile == "" {
		return c.HTTP.Token, nil
	}
	b, err := os.ReadFile(c.HTTP.TokenFile)
	if err != nil {
		return "", err
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("%s is empty", c.HTTP.TokenFile)
	}
	return tok, nil
}

// validateHTTP checks the token settings: an http.listen off loopback exposes the admin API,
// so it needs a token.
func (c *Config) validateHTTP() []error {
	var errs []error
	if c.HTTP.Token != "" && c.HTTP.TokenFile != "" {
		errs = append(errs, c.problem("http.token_file", "set http.token or http.token_file, not both"))
	}
	if strings.TrimSpace(c.HTTP.Token) != c.HTTP.Token || strings.ContainsAny(c.HTTP.Token, "\r\n") {
		errs = append(errs, c.problem("http.token", "must not have surrounding spaces or line breaks"))
	}
	tok, err := c.HTTPToken()
	if err != nil {
		errs = append(errs, c.problem("http.token_file", "%v", err))
	}
	if _, _, perr := net.SplitHostPort(c.HTTP.Listen); perr == nil && (c.HTTP.API || c.HTTP.PProf) && tok == "" && err == nil && !LoopbackListen(c.HTTP.Listen) {
		what, off := "the admin API (/api/)", "http.api: false"
		switch {
		case c.HTTP.API && c.HTTP.PProf:
			what, off = "the admin API (/api/) and the profiler (/debug/pprof/)", "http.api: false and http.pprof: false"
		case c.HTTP.PProf:
			what, off = "the profiler (/debug/pprof/)", "http.pprof: false"
		}
		errs = append(errs, c.problem("http.listen", "%q is not a loopback address, so %s would be open "+
			"to the network: set http.token or http.token_file, or %s (or listen on 127.0.0.1 or [::1])", c.HTTP.Listen, what, off))
	}
	return errs
}

// LoopbackListen reports whether host:port binds loopback only.
func LoopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
