package history

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsfence/dnsfence/resolver"
)

func openTemp(t *testing.T) (Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "history.db")
	s, err := OpenSQLite(context.Background(), path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestSQLiteUpsertQueryPrune(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	row := func(bucket time.Time, inst, client, app string, n int64, first, last time.Duration) Row {
		return Row{Bucket: bucket, Instance: inst, Client: client, App: app, List: app + "-list", Outcome: "blocked",
			Count: n, FirstSeen: bucket.Add(first), LastSeen: bucket.Add(last)}
	}
	if err := s.Write(ctx, []Row{
		row(t0, "a", "192.0.2.1", "alipay", 3, time.Minute, 10*time.Minute),
		row(t0.Add(time.Hour), "a", "192.0.2.1", "alipay", 2, time.Minute, 2*time.Minute),
		row(t0, "a", "192.0.2.2", "wechat", 1, 0, 0),
		row(t0.Add(-100*24*time.Hour), "a", "192.0.2.9", "qq", 7, 0, 0),
	}); err != nil {
		t.Fatal(err)
	}
	// The same key again merges: counts add, first/last widen.
	if err := s.Write(ctx, []Row{row(t0, "a", "192.0.2.1", "alipay", 4, 0, 20*time.Minute)}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Query(ctx, Filter{Since: t0.Add(-24 * time.Hour), App: "alipay"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("rows = %+v, want one (summed over buckets)", rows)
	}
	r := rows[0]
	if r.Count != 9 || !r.FirstSeen.Equal(t0) || !r.LastSeen.Equal(t0.Add(time.Hour+2*time.Minute)) || r.Client != "192.0.2.1" {
		t.Errorf("row = %+v, want count 9, first %v, last %v", r, t0, t0.Add(time.Hour+2*time.Minute))
	}
	if rows, _ := s.Query(ctx, Filter{Since: t0.Add(-24 * time.Hour), Client: "192.0.2.2"}); len(rows) != 1 || rows[0].App != "wechat" {
		t.Errorf("client filter: %+v", rows)
	}
	n, err := s.Prune(ctx, t0.Add(-90*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("prune = %d, %v; want 1 old row", n, err)
	}
	if rows, _ := s.Query(ctx, Filter{}); len(rows) != 2 {
		t.Errorf("after prune: %+v", rows)
	}
	// Reopened, the rows are still there; a read-only reader sees them too.
	s.Close()
	ro, err := OpenSQLite(ctx, path, SQLiteOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if rows, err := ro.Query(ctx, Filter{}); err != nil || len(rows) != 2 {
		t.Errorf("reopened read-only: %+v %v", rows, err)
	}
	if err := ro.Write(ctx, []Row{row(t0, "a", "x", "y", 1, 0, 0)}); err == nil {
		t.Error("read-only store accepted a write")
	}
}

func TestSQLiteNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if _, err := s.(*sqlStore).db.ExecContext(ctx, `UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := OpenSQLite(ctx, path, SQLiteOptions{})
	if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), "99") {
		t.Fatalf("err = %v, want ErrNewerSchema naming version 99", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("a newer database must be left alone: %v", err)
	}
}

func TestSQLiteCorruptMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "history.db")
	junk := []byte(strings.Repeat("this is not an SQLite database\n", 200))
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	var moved string
	s, err := OpenSQLite(context.Background(), path, SQLiteOptions{OnCorrupt: func(_, m string, _ error) { moved = m }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if moved == "" || !strings.HasPrefix(filepath.Base(moved), "history.db.corrupt-") {
		t.Fatalf("moved aside to %q", moved)
	}
	if b, err := os.ReadFile(moved); err != nil || string(b) != string(junk) {
		t.Errorf("the corrupt file must be kept as it was: %v", err)
	}
	if err := s.Write(context.Background(), []Row{{Bucket: time.Now(), Client: "c", List: "l", Outcome: "blocked", Count: 1,
		FirstSeen: time.Now(), LastSeen: time.Now()}}); err != nil {
		t.Errorf("the fresh database does not take writes: %v", err)
	}
}

// flakyStore fails while down is set.
type flakyStore struct {
	Store
	mu   sync.Mutex
	down bool
}

func (f *flakyStore) setDown(d bool) { f.mu.Lock(); f.down = d; f.mu.Unlock() }
func (f *flakyStore) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("store down")
	}
	return nil
}
func (f *flakyStore) Write(ctx context.Context, rows []Row) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Store.Write(ctx, rows)
}
func (f *flakyStore) Ping(ctx context.Context) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Store.Ping(ctx)
}

func total(rows []Row) (n int64) {
	for _, r := range rows {
		n += r.Count
	}
	return n
}

// flushed flushes rec and returns every row of its store.
func flushed(t *testing.T, rec *Recorder, store Store) []Row {
	t.Helper()
	ctx := context.Background()
	if err := rec.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := store.Query(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestRecorderAggregatesDropsAndResumes(t *testing.T) {
	ctx := context.Background()
	base, _ := openTemp(t)
	fs := &flakyStore{Store: base}
	reg := prometheus.NewRegistry()
	rec, err := New(Options{
		Open: func(context.Context) (Store, error) { return fs, nil }, Instance: "test", Privacy: resolver.ClientTruncate,
		FlushInterval: time.Hour, MaxRows: 3, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.7")
	for range 5 {
		rec.Record(c1, "alipay", "alipay", Blocked)
	}
	rec.Record(c2, "wechat", "wechat", LogOnly)
	rows := flushed(t, rec, base)
	if len(rows) != 2 || total(rows) != 6 {
		t.Fatalf("rows = %+v, want 2 aggregates of 6 attempts", rows)
	}
	for _, r := range rows {
		if r.Client != "192.0.2.0" && r.Client != "198.51.100.0" {
			t.Errorf("client %q not truncated", r.Client)
		}
		if r.Instance != "test" {
			t.Errorf("instance %q", r.Instance)
		}
	}
	if got := testutil.ToFloat64(rec.m.up); got != 1 {
		t.Errorf("store_up = %v", got)
	}

	// Down: the rows are kept, then new rows past MaxRows are dropped; existing ones still count.
	fs.setDown(true)
	rec.Record(c1, "alipay", "alipay", Blocked)
	if err := rec.Flush(ctx); err == nil {
		t.Fatal("flush to a down store succeeded")
	}
	for _, app := range []string{"qq", "tiktok", "vmate", "shareit"} {
		rec.Record(c1, app, app, Exempt)
	}
	rec.Record(c1, "alipay", "alipay", Blocked) // an existing row: counted, not dropped
	_ = rec.Flush(ctx)
	if got := testutil.ToFloat64(rec.m.dropped); got != 2 {
		t.Errorf("dropped = %v, want 2 (rows 4 and 5 past a bound of 3)", got)
	}
	if got := testutil.ToFloat64(rec.m.up); got != 0 {
		t.Errorf("store_up = %v while down", got)
	}
	if got := testutil.ToFloat64(rec.m.fill); got != 1 {
		t.Errorf("buffer_fill_ratio = %v, want 1", got)
	}
	fs.setDown(false)
	if err := rec.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, _ = base.Query(ctx, Filter{})
	if total(rows) != 6+2+2 {
		t.Errorf("after resume: %d attempts in %+v, want 10", total(rows), rows)
	}
	// Close writes what is left.
	rec.Record(c2, "wechat", "wechat", Paused)
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenSQLite(ctx, "", SQLiteOptions{ReadOnly: true})
	if err == nil {
		ro.Close()
		t.Error("read-only open of a missing file succeeded")
	}
}

func TestRecorderCloseFlushes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "h.db")
	rec, err := New(Options{Open: func(ctx context.Context) (Store, error) { return OpenSQLite(ctx, path, SQLiteOptions{}) },
		Privacy: resolver.ClientOmit, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rec.Record(netip.MustParseAddr("2001:db8::1"), "", "ads", Paused)
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(ctx, path, SQLiteOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.Query(ctx, Filter{})
	if err != nil || len(rows) != 1 || rows[0].Client != "" || rows[0].Outcome != "paused" || rows[0].List != "ads" {
		t.Fatalf("rows = %+v, %v; want the paused attempt with the client omitted", rows, err)
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "36h": 36 * time.Hour, "1.5d": 36 * time.Hour} {
		if got, err := ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "-1d", "7 days", "x"} {
		if _, err := ParseAge(in); err == nil {
			t.Errorf("ParseAge(%q) accepted", in)
		}
	}
}

// TestSQLiteReadOnlyBeforeSchema: a report that opens the file while a server is creating it
// (empty, no schema yet: a first start, or a corrupt file just replaced) sees no attempts rather
// than failing on a missing table.
func TestSQLiteReadOnlyBeforeSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "h.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenSQLite(ctx, path, SQLiteOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of a file without a schema: %v", err)
	}
	defer ro.Close()
	rows, err := ro.Query(ctx, Filter{})
	if err != nil || len(rows) != 0 {
		t.Fatalf("rows %v, err %v; want none", rows, err)
	}
	if err := ro.Write(ctx, []Row{{App: "x", Count: 1}}); err == nil {
		t.Error("a read-only store accepted a write")
	}
}

// TestRecorderHandsOverInBatches checks that recording does not wake the aggregator per event:
// events wait in the queue until half of it is full (or a flush), then go over together, and
// each keeps the time it was recorded at, not the time it was aggregated.
func TestRecorderHandsOverInBatches(t *testing.T) {
	ctx := context.Background()
	base, _ := openTemp(t)
	var mu sync.Mutex
	now := time.Date(2026, 12, 3, 9, 59, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	rec, err := New(Options{
		Open:          func(context.Context) (Store, error) { return base, nil },
		FlushInterval: time.Hour, QueueLen: 8, Now: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rec.Close(ctx) }()
	c := netip.MustParseAddr("192.0.2.10")
	for range 3 { // below half of QueueLen: nobody is woken
		rec.Record(c, "alipay", "alipay", Blocked)
	}
	time.Sleep(50 * time.Millisecond) // time enough for an aggregator that was woken to take them
	if n := len(rec.events); n != 3 {
		t.Fatalf("%d events queued after 3 recorded, want 3 (the aggregator took them one by one)", n)
	}
	rec.Record(c, "alipay", "alipay", Blocked) // the fourth: half full, the aggregator is kicked
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.events) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events still queued 5 s after the queue was half full", len(rec.events))
		}
		time.Sleep(time.Millisecond)
	}

	// An event keeps the time it was recorded at (09:59) when it is aggregated later (10:01):
	// its bucket is 09:00, not the 10:00 one of an event recorded at 10:01.
	rec.Record(c, "qq", "qq", Blocked)
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	rec.Record(c, "qq", "qq", Blocked)
	rows := flushed(t, rec, base)
	if len(rows) != 2 || total(rows) != 6 {
		t.Fatalf("rows = %+v, want alipay 4 and qq 2", rows)
	}
	for _, r := range rows {
		if want := time.Date(2026, 12, 3, 9, 59, 0, 0, time.UTC); !r.FirstSeen.Equal(want) {
			t.Errorf("%s: first seen %v, want 09:59, when it was recorded", r.App, r.FirstSeen)
		}
	}
	var buckets int
	if err := base.(*sqlStore).db.QueryRowContext(ctx, `SELECT COUNT(*) FROM attempts WHERE app = 'qq'`).Scan(&buckets); err != nil || buckets != 2 {
		t.Errorf("qq is in %d buckets (%v), want 2: 09:00 and 10:00", buckets, err)
	}
}
