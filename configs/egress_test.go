package configs

import (
	"strings"
	"testing"
)

func TestEgressConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want []string // substrings of the error; none: valid
	}{
		{"egress:\n  enabled: true\n", nil},
		{"listen: [192.168.1.1:53]\negress:\n  enabled: true\n  rules: true\n  lan_interfaces: [br-lan]\n  force_dns: redirect\n  action: reject\n", nil},
		{"egress:\n  enabled: true\n  rules: true\n  lan_interfaces: [br-lan]\n  force_dns: redirect\n", []string{"listens on loopback only"}},
		{"egress:\n  enabled: true\n  colour: red\n", []string{"unknown key egress.colour"}},
		{"egress:\n  enabled: true\n  rules: true\n", []string{"egress.rules", "lan_interfaces or egress.lan_prefixes"}},
		{"egress:\n  enabled: true\n  force_dns: sometimes\n", []string{"line 3: egress.force_dns", "want redirect, drop or off"}},
		{"egress:\n  enabled: true\n  force_dns: drop\n", []string{"egress.force_dns: needs egress.rules"}},
		{"egress:\n  enabled: true\n  action: explode\n", []string{"line 3: egress.action"}},
		{"egress:\n  enabled: true\n  table: my-table\n", []string{"egress.table"}},
		{"egress:\n  enabled: true\n  lan_prefixes: [not-a-net]\n", []string{"egress.lan_prefixes[0]"}},
		{"egress:\n  enabled: true\n  lan_interfaces: [a-very-long-interface-name]\n", []string{"egress.lan_interfaces[0]"}},
		{"egress:\n  enabled: true\n  ip_lists:\n    - name: qq\n      path: /x\n", []string{"duplicate or reserved list name \"qq\""}},
		{"egress:\n  enabled: true\n  ip_lists:\n    - name: x\n", []string{"exactly one of path, url and builtin"}},
		{"egress:\n  enabled: true\n  ip_lists:\n    - name: x\n      builtin: nope\n", []string{"no built-in address list \"nope\""}},
		{"egress:\n  enabled: true\n  learn_min_ttl: 1h\n  learn_max_ttl: 1m\n", []string{"learn_max_ttl"}},
		{"egress:\n  enabled: false\n  action: explode\n", nil}, // an unused section is not checked
	} {
		cfg, err := Parse([]byte(tc.yaml), "t.yaml")
		if err == nil {
			err = cfg.Validate()
		}
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%q: %v", tc.yaml, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%q: accepted", tc.yaml)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q lacks %q", tc.yaml, err, w)
			}
		}
	}
}
