package configs

import (
	"fmt"
	"strings"
)

// flagValues maps the config paths that command-line flags set ("listen[0]", "http.listen",
// "blocklists[3]") to the flag as given ("-listen 1453"), so a bad value is reported as the flag
// rather than blamed on a line of the config file that the flag replaced.
type flagValues map[string]string

// SetByFlag records that the flag (as given, e.g. "-listen 1453") set the value at path
// ("listen[0]", "http.listen", "blocklists[3]"), so a problem with it names the flag rather than
// a line of the file the flag replaced. Call it before Validate.
func (c *Config) SetByFlag(path, flag string) {
	if c.flags == nil {
		c.flags = flagValues{}
	}
	c.flags[path] = flag
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

// ListLoadError names the -blocklist flag when the list that failed to load came from one, and
// the config file otherwise.
func (c *Config) ListLoadError(err error) error {
	for i, l := range c.Blocklists {
		if f, ok := c.flags[fmt.Sprintf("blocklists[%d]", i)]; ok && strings.Contains(err.Error(), fmt.Sprintf("blocklist %q:", l.Name)) {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return fmt.Errorf("%s: blocklists: %w", c.source, err)
}
