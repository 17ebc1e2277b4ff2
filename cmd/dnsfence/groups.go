package main

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/configs"
	"github.com/dnsfence/dnsfence/resolver"
)

// buildGroups turns the validated group config into the policy stage's groups; nil without groups.
func buildGroups(cfg *configs.Config, lists *blocklist.Live, log *zap.Logger) (*resolver.Groups, error) {
	if len(cfg.Groups) == 0 {
		return nil, nil
	}
	gs := &resolver.Groups{}
	for _, gc := range cfg.Groups {
		g, err := buildGroup(cfg, gc, lists)
		if err != nil {
			return nil, err
		}
		for _, e := range g.Exemptions {
			if time.Now().Before(e.Until) {
				log.Info("exemption active", zap.String("group", g.Name), zap.String("app", e.App),
					zap.String("list", e.List), zap.Time("until", e.Until), zap.String("reason", e.Reason))
			}
		}
		if gc.Name == "default" {
			gs.Default = g
			continue
		}
		for _, cl := range gc.Clients {
			p, _ := configs.ParsePrefixOrAddr(cl) // validated
			gs.Add(p, g)
		}
	}
	if gs.Default == nil {
		g, err := buildGroup(cfg, configs.GroupConfig{Name: "default"}, lists)
		if err != nil {
			return nil, err
		}
		gs.Default = g
	}
	return gs, nil
}

func buildGroup(cfg *configs.Config, gc configs.GroupConfig, lists *blocklist.Live) (*resolver.Group, error) {
	apps := gc.Apps
	if apps == nil {
		apps = cfg.Apps
	}
	names := append([]string(nil), apps...)
	if gc.Lists == nil {
		for _, l := range cfg.Blocklists {
			names = append(names, l.Name)
		}
	} else {
		names = append(names, gc.Lists...)
	}
	mask, err := lists.Mask(names...)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", gc.Name, err)
	}
	g := &resolver.Group{Name: gc.Name, Lists: mask, LogOnly: gc.Mode == "log-only"}
	for _, e := range gc.Exemptions {
		until, _ := time.Parse(time.RFC3339, e.Until)
		g.Exemptions = append(g.Exemptions, resolver.Exemption{List: e.List, App: e.App, Until: until, Reason: e.Reason})
	}
	return g, nil
}

// groupNames are the values of the group metric label.
func groupNames(cfg *configs.Config) []string {
	names := []string{"default"}
	for _, g := range cfg.Groups {
		if g.Name != "default" {
			names = append(names, g.Name)
		}
	}
	return names
}
