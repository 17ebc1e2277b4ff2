package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsfence/dnsfence/configs"
)

// TestShippedConfigs loads every example config: docs that do not parse fail the build.
func TestShippedConfigs(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs found: %v", err)
	}
	for _, f := range files {
		cfg, err := loadConfig(&options{config: f})
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, _, err := loadSet(cfg); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// The embedded default is the shipped file itself.
	shipped, err := os.ReadFile("../../configs/dnsfence.yaml")
	if err != nil || !bytes.Equal(shipped, configs.DefaultConfig()) {
		t.Error("embedded default differs from configs/dnsfence.yaml")
	}
}

func TestFlagsOverrideConfig(t *testing.T) {
	p := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:5300]\nupstreams: [192.0.2.1]\nblocklists: [{name: ads, path: /z/ads.txt}]\nhttp: {listen: 127.0.0.1:9999}\n")
	o, _, err := parseFlags("t", []string{"-config", p, "-listen", "127.0.0.2:53", "-upstream", "tcp://192.0.2.2",
		"-blocklist", "/x/ads.txt", "-blocklist", "/y/more.list", "-http", ""}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range cfg.Blocklists {
		names = append(names, l.Name)
	}
	if strings.Join(cfg.Listen, ",") != "127.0.0.2:53" || strings.Join(cfg.Upstreams, ",") != "tcp://192.0.2.2" ||
		strings.Join(names, ",") != "ads,ads-2,more" || cfg.HTTP.Listen != "" {
		t.Fatalf("listen %v upstreams %v lists %v http %q", cfg.Listen, cfg.Upstreams, names, cfg.HTTP.Listen)
	}
}
