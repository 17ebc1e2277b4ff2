// Package report keeps, since start, who tried to reach what: attempts per app, per list and per
// client, for an admin to hand on. It counts in memory with atomics (no metric labels, so client
// addresses never reach Prometheus) and bounds the number of clients it tracks.
package report

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/dnsfence/dnsfence/resolver"
)

// Other is the bucket for lists without an app, and for clients past the tracking limit.
const Other = "other"

// Report accumulates attempts. Safe for concurrent use.
type Report struct {
	start      time.Time
	apps       []string // app ids; index len(apps) is Other
	maxClients int64

	clients  sync.Map // netip.Addr -> *counts
	nclients atomic.Int64
	overflow counts   // clients past maxClients
	lists    sync.Map // list name -> *atomic.Int64
	byApp    []counts
}

// counts are one client's (or app's) attempts: blocked and allowed-by-policy, per app.
type counts struct {
	blocked, allowed atomic.Int64
	perApp           []atomic.Int64
	last             atomic.Int64 // unix seconds of the last attempt
}

// New tracks attempts for the given app ids and at most maxClients distinct clients (the rest are
// counted together as Other).
func New(apps []string, maxClients int) *Report {
	r := &Report{start: time.Now(), apps: slices.Clone(apps), maxClients: int64(maxClients)}
	r.overflow.perApp = make([]atomic.Int64, len(apps)+1)
	r.byApp = make([]counts, len(apps)+1)
	return r
}

func (r *Report) appIndex(app string) int {
	if i := slices.Index(r.apps, app); i >= 0 {
		return i
	}
	return len(r.apps)
}

// Record counts one attempt by client on list (filed under app, "" for none); blocked is false
// when a log-only group or an exemption let it through.
func (r *Report) Record(client netip.Addr, app, list string, blocked bool) {
	i := r.appIndex(app)
	c := r.client(client)
	for _, k := range []*counts{c, &r.byApp[i]} {
		if blocked {
			k.blocked.Add(1)
		} else {
			k.allowed.Add(1)
		}
	}
	c.perApp[i].Add(1)
	c.last.Store(time.Now().Unix())
	if v, ok := r.lists.Load(list); ok {
		v.(*atomic.Int64).Add(1)
	} else {
		v, _ := r.lists.LoadOrStore(list, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
}

func (r *Report) client(a netip.Addr) *counts {
	if v, ok := r.clients.Load(a); ok {
		return v.(*counts)
	}
	// Reserve a slot first, so concurrent new clients cannot overshoot the bound.
	for {
		n := r.nclients.Load()
		if n >= r.maxClients {
			return &r.overflow
		}
		if r.nclients.CompareAndSwap(n, n+1) {
			break
		}
	}
	c := &counts{perApp: make([]atomic.Int64, len(r.apps)+1)}
	v, loaded := r.clients.LoadOrStore(a, c)
	if loaded {
		r.nclients.Add(-1) // another goroutine added this client first
	}
	return v.(*counts)
}

// Middleware records every blocked or policy-allowed query; place it outside the block stage.
func (r *Report) Middleware() resolver.Middleware {
	return func(next resolver.Resolver) resolver.Resolver {
		return resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
			resp, err := next.Resolve(ctx, req)
			if err == nil && resp != nil && (resp.Outcome == resolver.OutcomeBlocked || resp.Allowed != resolver.NotAllowed) {
				r.Record(req.Client, resp.App, resp.List, resp.Outcome == resolver.OutcomeBlocked)
			}
			return resp, err
		})
	}
}

// Summary is a snapshot of the report.
type Summary struct {
	Since   time.Time      `json:"since"`
	Apps    []AppCount     `json:"apps"`
	Lists   map[string]int `json:"lists"`
	Clients []ClientCount  `json:"top_clients"`
	// TrackedClients is how many distinct clients were seen (up to the limit).
	TrackedClients int `json:"tracked_clients"`
}

// AppCount is the attempts on one app's lists.
type AppCount struct {
	App     string `json:"app"`
	Blocked int64  `json:"blocked"`
	Allowed int64  `json:"allowed_by_policy"`
}

// ClientCount is one client's attempts.
type ClientCount struct {
	Client  string           `json:"client"`
	Blocked int64            `json:"blocked"`
	Allowed int64            `json:"allowed_by_policy"`
	Apps    map[string]int64 `json:"apps"`
	Last    time.Time        `json:"last"`
}

// Summary returns the apps, lists and the top clients by attempts (at most top).
func (r *Report) Summary(top int) Summary {
	s := Summary{Since: r.start, Lists: map[string]int{}, TrackedClients: int(r.nclients.Load())}
	names := append(slices.Clone(r.apps), Other)
	for i, n := range names {
		s.Apps = append(s.Apps, AppCount{App: n, Blocked: r.byApp[i].blocked.Load(), Allowed: r.byApp[i].allowed.Load()})
	}
	r.lists.Range(func(k, v any) bool {
		s.Lists[k.(string)] = int(v.(*atomic.Int64).Load())
		return true
	})
	add := func(name string, c *counts) {
		cc := ClientCount{Client: name, Blocked: c.blocked.Load(), Allowed: c.allowed.Load(), Apps: map[string]int64{}}
		if cc.Blocked+cc.Allowed == 0 {
			return
		}
		for i, n := range names {
			if v := c.perApp[i].Load(); v > 0 {
				cc.Apps[n] = v
			}
		}
		cc.Last = time.Unix(c.last.Load(), 0).UTC()
		s.Clients = append(s.Clients, cc)
	}
	r.clients.Range(func(k, v any) bool {
		add(k.(netip.Addr).String(), v.(*counts))
		return true
	})
	add(Other, &r.overflow)
	slices.SortFunc(s.Clients, func(a, b ClientCount) int {
		if c := cmp.Compare(b.Blocked+b.Allowed, a.Blocked+a.Allowed); c != 0 {
			return c
		}
		return cmp.Compare(a.Client, b.Client)
	})
	if len(s.Clients) > top {
		s.Clients = s.Clients[:top]
	}
	return s
}

// WriteText writes s for a person.
func (s Summary) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "dnsfence report since %s\n\nAttempts per app (blocked / let through by policy):\n", s.Since.UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, a := range s.Apps {
		fmt.Fprintf(tw, "  %s\t%d\t%d\n", a.App, a.Blocked, a.Allowed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nTop clients (of %d seen):\n", s.TrackedClients)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range s.Clients {
		var apps []string
		for a, n := range c.Apps {
			apps = append(apps, fmt.Sprintf("%s=%d", a, n))
		}
		slices.Sort(apps)
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%v\tlast %s\n", c.Client, c.Blocked, c.Allowed, apps, c.Last.Format(time.RFC3339))
	}
	return tw.Flush()
}

// WriteJSON writes s as JSON.
func (s Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}
