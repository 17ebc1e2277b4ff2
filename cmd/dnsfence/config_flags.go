package main

import (
	"fmt"
	"strings"
)

// flagValues maps the config paths that command-line flags set ("listen[0]", "http.listen",
// "blocklists[3]") to the flag as given ("-listen 1453"), so a bad value is reported as the flag
// rather than blamed on a line of the config file that the flag replaced.
type flagValues map[string]string

// recordFlags notes which config paths o's flags set; cfg holds the file's values, before the
// flags are applied.
func recordFlags(cfg *Config, o *options) flagValues {
	f := flagValues{}
	for i, l := range o.listen {
		f[fmt.Sprintf("listen[%d]", i)] = "-listen " + l
	}
	for i, u := range o.upstreams {
		f[fmt.Sprintf("upstreams[%d]", i)] = "-upstream " + u
	}
	for i, p := range o.blocklists {
		f[fmt.Sprintf("blocklists[%d]", len(cfg.Blocklists)+i)] = "-blocklist " + p
	}
	for _, fl := range []struct{ path, name, v string }{
		{"log.format", "-log.format", o.logFormat}, {"log.level", "-log.level", o.logLevel},
		{"tls.cert", "-tls-cert", o.tlsCert}, {"tls.key", "-tls-key", o.tlsKey},
	} {
		if fl.v != "" {
			f[fl.path] = fl.name + " " + fl.v
		}
	}
	if o.httpSet {
		f["http.listen"] = fmt.Sprintf("-http %q", o.http)
	}
	return f
}

// flag returns the flag that set path or the item path is inside ("blocklists[3].path").
func (f flagValues) flag(path string) (string, bool) {
	for p := path; p != ""; {
		if v, ok := f[p]; ok {
			return v, true
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return "", false
}

// listLoadError names the -blocklist flag when the list that failed to load came from one, and
// the config file otherwise.
func (c *Config) listLoadError(err error) error {
	for i, l := range c.Blocklists {
		if f, ok := c.flags[fmt.Sprintf("blocklists[%d]", i)]; ok && strings.Contains(err.Error(), fmt.Sprintf("blocklist %q:", l.Name)) {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return fmt.Errorf("%s: blocklists: %w", c.source, err)
}
