package main

import (
	"strings"
	"testing"

	"github.com/dnsfence/dnsfence/configs"
)

// FuzzConfig: any bytes as a config file either parse and validate or give an error; never a
// panic. A config that validates must build its sinkholes, nets and upstream list without error.
func FuzzConfig(f *testing.F) {
	f.Add(configs.DefaultConfig())
	f.Add([]byte("listen: [127.0.0.1:53]\nblocking: {mode: custom, ipv4: 192.0.2.1}\n"))
	f.Add([]byte("apps: [alipay, nope]\ngroups:\n  - {name: a, clients: [10.0.0.0/8], mode: log-only}\n"))
	f.Add([]byte("blocking:\n  mode: null\n  blocked_nets: [203.0.113.0/24]\naccess: {allow: [0.0.0.0/0], action: drop}\n"))
	f.Add([]byte("upstreams: [tcp://[::1]:53, 192.0.2.1]\nlog: {format: json}\n"))
	f.Add([]byte("- just\n- a list\n"))
	f.Add([]byte("listen: {a: b}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := configs.Parse(data, "fuzz.yaml")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			return
		}
		_ = cfg.Sinkhole("")
		_ = cfg.ListSinkholes()
		if _, errs := cfg.BlockedNets(); len(errs) > 0 {
			t.Fatalf("valid config, bad nets: %v", errs)
		}
		if _, errs := cfg.AllowedNets(); len(errs) > 0 {
			t.Fatalf("valid config, bad access: %v", errs)
		}
		_ = cfg.ListSources(cfg.Fetcher("dnsfence/" + version))
		_ = cfg.ExposedListeners()
	})
}
