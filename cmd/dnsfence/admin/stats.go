package admin

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/topk"
)

// TopKCapacity is how many names and clients the Stats track: the top 20 of them are then
// counted within (blocked queries so far)/256 of their true count, in a few tens of KB.
const TopKCapacity = 256

// Stats are the in-memory counters behind GET /api/Stats, kept since start across reloads.
type Stats struct {
	start    time.Time
	outcomes []atomic.Int64 // by resolver.Outcome
	allowed  [resolver.AllowedPaused + 1]atomic.Int64
	// names counts blocked query names; clients counts the clients of blocked queries filed
	// under an app. Each takes its mutex on blocked queries only.
	names   *topk.Counter[string]
	clients *topk.Counter[netip.Addr]
}

func NewStats() *Stats {
	return &Stats{
		start:    time.Now(),
		outcomes: make([]atomic.Int64, len(resolver.Outcomes())),
		names:    topk.New[string](TopKCapacity),
		clients:  topk.New[netip.Addr](TopKCapacity),
	}
}

// middleware counts every query; place it outermost, beside metrics, so it sees every outcome.
func (s *Stats) Middleware() resolver.Middleware {
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

// StatsReport is the JSON of GET /api/Stats.
type StatsReport struct {
	Started       time.Time        `json:"started"`
	UptimeSeconds float64          `json:"uptime_seconds"`
	Queries       map[string]int64 `json:"queries"`
	Allowed       map[string]int64 `json:"allowed_by_reason"`
	Blocking      BlockingState    `json:"blocking"`
	// TopBlocked and TopAppClients come from bounded top-k counters: a count may exceed the
	// true one by up to its error.
	TopBlocked    []TopItem `json:"top_blocked_names"`
	TopAppClients []TopItem `json:"top_app_clients"`
}

type TopItem struct {
	Name   string `json:"name,omitempty"`
	Client string `json:"client,omitempty"`
	Count  uint64 `json:"count"`
	Error  uint64 `json:"error"`
}

type BlockingState struct {
	Paused bool       `json:"paused"`
	Until  *time.Time `json:"until,omitempty"`
}

func (s *Stats) Report(top int, blocking BlockingState) StatsReport {
	r := StatsReport{
		Started:       s.start.UTC(),
		UptimeSeconds: time.Since(s.start).Seconds(),
		Queries:       map[string]int64{},
		Allowed:       map[string]int64{},
		Blocking:      blocking,
		TopBlocked:    []TopItem{},
		TopAppClients: []TopItem{},
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
		r.TopBlocked = append(r.TopBlocked, TopItem{Name: it.Key, Count: it.Count, Error: it.Error})
	}
	for _, it := range s.clients.Top(top) {
		r.TopAppClients = append(r.TopAppClients, TopItem{Client: it.Key.String(), Count: it.Count, Error: it.Error})
	}
	return r
}
