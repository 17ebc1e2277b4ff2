package configs

import (
	"fmt"
	"time"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/resolver"
)

// ClientGroups turns the validated group config into the policy stage's groups; nil without
// groups. active is called for each exemption in force now, for the log.
func (c *Config) ClientGroups(lists *blocklist.Live, active func(group string, e resolver.Exemption)) (*resolver.Groups, error) {
	if len(c.Groups) == 0 {
		return nil, nil
	}
	gs := &resolver.Groups{}
	for _, gc := range c.Groups {
		g, err := c.clientGroup(gc, lists)
		if err != nil {
			return nil, err
		}
		for _, e := range g.Exemptions {
			if time.Now().Before(e.Until) {
				active(g.Name, e)
			}
		}
		if gc.Name == "default" {
			gs.Default = g
			continue
		}
		for _, cl := range gc.Clients {
			p, _ := ParsePrefixOrAddr(cl) // validated
			gs.Add(p, g)
		}
	}
	if gs.Default == nil {
		g, err := c.clientGroup(GroupConfig{Name: "default"}, lists)
		if err != nil {
			return nil, err
		}
		gs.Default = g
	}
	return gs, nil
}

func (c *Config) clientGroup(gc GroupConfig, lists *blocklist.Live) (*resolver.Group, error) {
	apps := gc.Apps
	if apps == nil {
		apps = c.Apps
	}
	names := append([]string(nil), apps...)
	if gc.Lists == nil {
		for _, l := range c.Blocklists {
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

// GroupNames are the values of the group metric label.
func (c *Config) GroupNames() []string {
	names := []string{"default"}
	for _, g := range c.Groups {
		if g.Name != "default" {
			names = append(names, g.Name)
		}
	}
	return names
}
