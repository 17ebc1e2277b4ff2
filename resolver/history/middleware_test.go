package history

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
)

// TestMiddlewareOutcomes: blocked and each way a match was let through are recorded under their
// outcome; answers that matched no list are not recorded.
func TestMiddlewareOutcomes(t *testing.T) {
	ctx := context.Background()
	store, _ := openTemp(t)
	rec, err := New(Options{Open: func(context.Context) (Store, error) { return store, nil }, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close(ctx)
	received := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	for _, resp := range []*resolver.Response{
		{Outcome: resolver.OutcomeBlocked, List: "alipay", App: "alipay"},
		{Outcome: resolver.OutcomeForwarded, List: "qq", App: "qq", Allowed: resolver.AllowedLogOnly},
		{Outcome: resolver.OutcomeCached, List: "vmate", App: "vmate", Allowed: resolver.AllowedExempt},
		{Outcome: resolver.OutcomeForwarded, List: "ads", Allowed: resolver.AllowedPaused},
		{Outcome: resolver.OutcomeForwarded},
		{Outcome: resolver.OutcomeLocal},
	} {
		resp.Msg = new(dns.Msg)
		chain := resolver.Chain(resolver.ResolverFunc(func(context.Context, *resolver.Request) (*resolver.Response, error) {
			return resp, nil
		}), rec.Middleware())
		req := &resolver.Request{Client: netip.MustParseAddr("::ffff:192.0.2.7"), Received: received}
		if _, err := chain.Resolve(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	rows := flushed(t, rec, store)
	got := map[string]string{}
	for _, r := range rows {
		got[r.List] = r.Outcome
		if r.Client != "192.0.2.7" || r.Count != 1 {
			t.Errorf("row %+v: want client 192.0.2.7 (unmapped), count 1", r)
		}
		if !r.FirstSeen.Equal(received) { // the query's time, not a second clock read
			t.Errorf("row %s first seen %v, want the query's Received %v", r.List, r.FirstSeen, received)
		}
	}
	want := map[string]string{"alipay": "blocked", "qq": "log-only", "vmate": "exempt", "ads": "paused"}
	if len(got) != len(want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	for l, o := range want {
		if got[l] != o {
			t.Errorf("list %s: outcome %q, want %q", l, got[l], o)
		}
	}
}

// BenchmarkRecord is the query path's cost: one non-blocking channel send, no allocation.
func BenchmarkRecord(b *testing.B) {
	rec, err := New(Options{Open: func(context.Context) (Store, error) { return nopStore{}, nil }, FlushInterval: time.Hour,
		QueueLen: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Close(context.Background())
	c := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		rec.Record(c, "alipay", "alipay", Blocked)
	}
}

type nopStore struct{}

func (nopStore) Write(context.Context, []Row) error              { return nil }
func (nopStore) Prune(context.Context, time.Time) (int64, error) { return 0, nil }
func (nopStore) Query(context.Context, Filter) ([]Row, error)    { return nil, nil }
func (nopStore) Ping(context.Context) error                      { return nil }
func (nopStore) Close() error                                    { return nil }

// TestNilRecorderHasNoStage: with history off the chain has no history stage.
func TestNilRecorderHasNoStage(t *testing.T) {
	if (*Recorder)(nil).Middleware() != nil {
		t.Error("a nil *Recorder returned a stage")
	}
}
