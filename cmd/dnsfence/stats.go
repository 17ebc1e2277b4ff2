package main

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/topk"
)

// topKCapacity is how many names and clients the stats track: the top 20 of them are then
// counted within (blocked queries so far)/256 of their true count, in a few tens of KB.
const topKCapacity = 256

// stats are the in-memory counters behind GET /api/stats, kept since start across reloads.
type stats struct {
	start    time.Time
	outcomes []atomic.Int64 // by resolver.Outcome
	allowed  [resolver.AllowedPaused + 1]atomic.Int64
	// names counts blocked query names; clients counts the clients of blocked queries filed
	// under an app. Each takes its mutex on blocked queries only.
	names   *topk.Counter[string]
	clients *topk.Counter[netip.Addr]
}

func newStats() *stats {
	return &stats{
		start:    time.Now(),
		outcomes: make([]atomic.Int64, len(resolver.Outcomes())),
		names:    topk.New[string](topKCapacity),
		clients:  topk.New[netip.Addr](topKCapacity),
	}
}

// middleware counts every query; place it outermost, beside metrics, so it sees every outcome.
func (s *stats) middleware() resolver.Middleware {
	return func(next resolver.Resolver) resolver.Resolver {
		return resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
			resp, err := next.Resolve(ctx, req)
			if err != nil || resp == nil || resp.Msg == nil {
				s.outcomes[resolver.OutcomeError].Add(1)
				return resp, err
			}
			if int(resp.Outcome) < len(s.outcomes) {
				s.outcomes[resp.Outcome].Add(1)
			}
			switch {
			case resp.Outcome == resolver.OutcomeBlocked:
				// Lowercased: 0x20-randomized spellings are one name.
				s.names.Add(strings.ToLower(req.Question().Name))
				if resp.App != "" {
					s.clients.Add(req.Client)
				}
			case resp.Allowed != resolver.NotAllowed && int(resp.Allowed) < len(s.allowed):
				s.allowed[resp.Allowed].Add(1)
			}
			return resp, err
		})
	}
}

// statsReport is the JSON of GET /api/stats.
type statsReport struct {
	Started       time.Time        `json:"started"`
	UptimeSeconds float64          `json:"uptime_seconds"`
	Queries       map[string]int64 `json:"queries"`
	Allowed       map[string]int64 `json:"allowed_by_reason"`
	Blocking      blockingState    `json:"blocking"`
	// TopBlocked and TopAppClients come from bounded top-k counters: a count may exceed the
	// true one by up to its error.
	TopBlocked    []topItem `json:"top_blocked_names"`
	TopAppClients []topItem `json:"top_app_clients"`
}

type topItem struct {
	Name   string `json:"name,omitempty"`
	Client string `json:"client,omitempty"`
	Count  uint64 `json:"count"`
	Error  uint64 `json:"error"`
}

type blockingState struct {
	Paused bool       `json:"paused"`
	Until  *time.Time `json:"until,omitempty"`
}

func (s *stats) report(top int, blocking blockingState) statsReport {
	r := statsReport{
		Started:       s.start.UTC(),
		UptimeSeconds: time.Since(s.start).Seconds(),
		Queries:       map[string]int64{},
		Allowed:       map[string]int64{},
		Blocking:      blocking,
		TopBlocked:    []topItem{},
		TopAppClients: []topItem{},
	}
	var total int64
	for i, o := range resolver.Outcomes() {
		n := s.outcomes[i].Load()
		r.Queries[o.String()] = n
		total += n
	}
	r.Queries["total"] = total
	for a := resolver.AllowedLogOnly; int(a) < len(s.allowed); a++ {
		r.Allowed[a.String()] = s.allowed[a].Load()
	}
	for _, it := range s.names.Top(top) {
		r.TopBlocked = append(r.TopBlocked, topItem{Name: it.Key, Count: it.Count, Error: it.Error})
	}
	for _, it := range s.clients.Top(top) {
		r.TopAppClients = append(r.TopAppClients, topItem{Client: it.Key.String(), Count: it.Count, Error: it.Error})
	}
	return r
}
