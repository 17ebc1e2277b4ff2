package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagErrorsNameTheFlag: a bad value given by a flag is reported as that flag, never as a
// line of the config file (or built-in config) whose value the flag replaced.
func TestFlagErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", "# a config\nlisten: [127.0.0.1:1053]\nupstreams: [192.0.2.1]\nhttp:\n  listen: 127.0.0.1:9253\nblocklists: []\n")
	missing := filepath.Join(dir, "missing.txt")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-listen", "1453"}, `-listen 1453: "1453" is not IP:port`},
		{[]string{"-listen", "127.0.0.1:1053", "-listen", "1453"}, `-listen 1453: `},
		{[]string{"-http", "1453"}, `-http "1453": "1453" is not host:port`},
		{[]string{"-upstream", "dns.google"}, `-upstream dns.google: upstream "dns.google"`},
		{[]string{"-blocklist", missing}, "-blocklist " + missing + `: blocklist "missing"`},
		{[]string{"-log.level", "loud"}, `-log.level loud: "loud"`},
	} {
		for _, base := range [][]string{nil, {"-config", cfg}} {
			args := append(append(append([]string{}, base...), tc.args...), "-config.check")
			err := run(t.Context(), args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "line ") {
				t.Errorf("dnsfence %s: %v\nwant the error to name the flag: %s", strings.Join(args, " "), err, tc.want)
			}
		}
	}
}
