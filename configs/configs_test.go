package configs_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/configs"
)

// TestAppLists: every curated list has its header, parses with zero skipped lines, cites a source
// on every entry, and stays off the shared infrastructure its header promises to leave out.
func TestAppLists(t *testing.T) {
	apps, err := configs.Apps()
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 8 {
		t.Fatalf("%d apps, want the eight of EO 13971", len(apps))
	}
	shared := []string{"qq.com", "weixin.qq.com", "wechat.com", "qpic.cn", "gtimg.cn", "alicdn.com", "taobao.com", "kingsoft.com", "ucweb.com"}
	for _, a := range apps {
		t.Run(a.ID, func(t *testing.T) {
			if !strings.Contains(a.Policy, "EO 14034") {
				t.Errorf("policy line %q does not say the order was revoked", a.Policy)
			}
			set, infos, err := blocklist.Load([]blocklist.Source{{Name: a.ID, Path: a.Path, FS: configs.Lists()}})
			if err != nil {
				t.Fatal(err)
			}
			if infos[0].Invalid != 0 || set.Len() == 0 {
				t.Errorf("%d entries, %d invalid lines: %v", set.Len(), infos[0].Invalid, infos[0].Examples)
			}
			for _, d := range shared {
				if _, _, ok := set.Match(d); ok {
					t.Errorf("blocks shared domain %s", d)
				}
			}
			data, err := fs.ReadFile(configs.Lists(), a.Path)
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(string(data), "\n") {
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				if _, cite, ok := strings.Cut(line, "# "); !ok || len(cite) < 10 {
					t.Errorf("%s:%d: entry without a source: %q", a.Path, i+1, line)
				}
			}
		})
	}
}

func TestDefaultConfigEmbedded(t *testing.T) {
	if !strings.Contains(string(configs.DefaultConfig()), "apps: all") {
		t.Error("the built-in config does not enable all apps")
	}
}

func TestBuiltinLists(t *testing.T) {
	names := configs.Builtins()
	if len(names) == 0 || names[0] != "doh-bypass" {
		t.Fatalf("builtins %v, want doh-bypass", names)
	}
	for _, n := range names {
		_, infos, err := blocklist.Load([]blocklist.Source{{Name: n, Path: configs.BuiltinPath(n), FS: configs.Lists()}})
		if err != nil || infos[0].Invalid != 0 || infos[0].Entries == 0 {
			t.Errorf("%s: %+v %v", n, infos, err)
		}
	}
}
