package blocklist

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptServer answers the i-th request with steps[i], repeating the last
// step, and records each request's headers.
type scriptServer struct {
	*httptest.Server
	mu    sync.Mutex
	steps []http.HandlerFunc
	seen  []*http.Request
}

func newScriptServer(t *testing.T, steps ...http.HandlerFunc) *scriptServer {
	t.Helper()
	s := &scriptServer{steps: steps}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Clone(context.Background()))
		h := s.steps[min(len(s.seen), len(s.steps))-1]
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// script replaces the steps and forgets the requests seen so far.
func (s *scriptServer) script(steps ...http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps, s.seen = steps, nil
}

func (s *scriptServer) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.seen...)
}

// reply answers with status, header pairs (name, value, ...) and body.
func reply(status int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

// testClock is the injected clock; tests advance it between fetches.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time          { return c.t }
func (c *testClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newTestClock() *testClock               { return &testClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }
func (c *testClock) fetcher(dir string) *Fetcher {
	return &Fetcher{CacheDir: dir, Backoff: time.Millisecond, now: c.now}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readMeta(t *testing.T, f *Fetcher, name string) listMeta {
	t.Helper()
	var m listMeta
	if err := json.Unmarshal([]byte(readString(t, f.metaPath(name))), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// wantDir checks that dir holds exactly the given files: no temp file left.
func wantDir(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

func sameFile(t *testing.T, before os.FileInfo, path string) bool {
	t.Helper()
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(before, after)
}

const (
	listV1  = "a.example\nb.example\n"
	listV2  = "a.example\nc.example\n"
	lastMod = "Sat, 01 Mar 2025 10:00:00 GMT"
)

func TestFetchRevalidate(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	clock := newTestClock()
	f := clock.fetcher(dir)
	conditional := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		reply(http.StatusOK, listV1, "ETag", `"v1"`, "Last-Modified", lastMod)(w, r)
	}
	srv := newScriptServer(t, conditional)
	url := srv.URL + "/ads.txt"

	res, err := f.Fetch(ctx, "ads", url)
	if err != nil {
		t.Fatal(err)
	}
	first := clock.t
	want := FetchResult{Path: filepath.Join(dir, "ads.txt"), Changed: true, Status: 200, Bytes: int64(len(listV1)), Fetched: first}
	if res != want {
		t.Fatalf("first fetch: got %+v, want %+v", res, want)
	}
	if got := readString(t, res.Path); got != listV1 {
		t.Errorf("cache holds %q, want %q", got, listV1)
	}
	wantMeta := listMeta{URL: url, ETag: `"v1"`, LastModified: lastMod, SHA256: sha256Hex(listV1), Fetched: first}
	if m := readMeta(t, f, "ads"); m != wantMeta {
		t.Errorf("meta: got %+v, want %+v", m, wantMeta)
	}
	wantDir(t, dir, "ads.meta.json", "ads.txt")
	reqs := srv.requests()
	if h := reqs[0].Header; h.Get("If-None-Match") != "" || h.Get("If-Modified-Since") != "" || h.Get("User-Agent") != "dnsfence" {
		t.Errorf("first request headers: %v", h)
	}
	before, err := os.Stat(res.Path)
	if err != nil {
		t.Fatal(err)
	}

	clock.advance(time.Hour)
	srv.script(conditional)
	res, err = f.Fetch(ctx, "ads", url)
	if err != nil {
		t.Fatal(err)
	}
	want = FetchResult{Path: filepath.Join(dir, "ads.txt"), Status: 304, Bytes: int64(len(listV1)), Fetched: clock.t}
	if res != want {
		t.Fatalf("revalidation: got %+v, want %+v", res, want)
	}
	reqs = srv.requests()
	if h := reqs[0].Header; h.Get("If-None-Match") != `"v1"` || h.Get("If-Modified-Since") != lastMod {
		t.Errorf("revalidation sent If-None-Match %q, If-Modified-Since %q", h.Get("If-None-Match"), h.Get("If-Modified-Since"))
	}
	if !sameFile(t, before, res.Path) || readString(t, res.Path) != listV1 {
		t.Error("a 304 replaced the cache file")
	}
	if m := readMeta(t, f, "ads"); !m.Fetched.Equal(clock.t) || m.ETag != `"v1"` {
		t.Errorf("meta after 304: %+v", m)
	}
	wantDir(t, dir, "ads.meta.json", "ads.txt")
}

func TestFetchChangedAndIdenticalBody(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	clock := newTestClock()
	f := clock.fetcher(dir)
	srv := newScriptServer(t, reply(200, listV1, "ETag", `"v1"`))
	url := srv.URL + "/ads.txt"
	if _, err := f.Fetch(ctx, "ads", url); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(f.CachePath("ads"))
	if err != nil {
		t.Fatal(err)
	}

	// The server ignores If-None-Match and sends the same body with a new ETag.
	srv.script(reply(200, listV1, "ETag", `"v1b"`))
	clock.advance(time.Minute)
	res, err := f.Fetch(ctx, "ads", url)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.Status != 200 || res.Path != f.CachePath("ads") || res.Bytes != int64(len(listV1)) || !res.Fetched.Equal(clock.t) {
		t.Errorf("identical body: %+v", res)
	}
	if !sameFile(t, before, res.Path) {
		t.Error("an identical body replaced the cache file")
	}
	if m := readMeta(t, f, "ads"); m.ETag != `"v1b"` || !m.Fetched.Equal(clock.t) {
		t.Errorf("meta after identical body: %+v", m)
	}
	if got := srv.requests()[0].Header.Get("If-None-Match"); got != `"v1"` {
		t.Errorf("If-None-Match %q, want %q", got, `"v1"`)
	}

	srv.script(reply(200, listV2))
	res, err = f.Fetch(ctx, "ads", url)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || readString(t, res.Path) != listV2 {
		t.Errorf("changed body: %+v, cache %q", res, readString(t, res.Path))
	}
	if m := readMeta(t, f, "ads"); m.SHA256 != sha256Hex(listV2) || m.ETag != "" {
		t.Errorf("meta after changed body: %+v", m)
	}
	wantDir(t, dir, "ads.meta.json", "ads.txt")
}

func TestFetchRetries(t *testing.T) {
	tests := []struct {
		name         string
		retries      int
		steps        []http.HandlerFunc
		wantAttempts int
		wantStatus   int
		wantOK       bool
	}{
		{"500 always", 2, []http.HandlerFunc{reply(500, "")}, 3, 500, false},
		{"500 always, default retries", 0, []http.HandlerFunc{reply(500, "")}, 1 + defaultFetchRetries, 500, false},
		{"500 always, no retries", -1, []http.HandlerFunc{reply(500, "")}, 1, 500, false},
		{"404 not retried", 2, []http.HandlerFunc{reply(404, "")}, 1, 404, false},
		{"403 not retried", 2, []http.HandlerFunc{reply(403, "")}, 1, 403, false},
		{"429 then 200", 2, []http.HandlerFunc{reply(429, ""), reply(200, listV2)}, 2, 200, true},
		{"503 then 200", 2, []http.HandlerFunc{reply(503, ""), reply(200, listV2)}, 2, 200, true},
		{"connection dropped then 200", 2, []http.HandlerFunc{hangUp, reply(200, listV2)}, 2, 200, true},
		{"503 then 404", 2, []http.HandlerFunc{reply(503, ""), reply(404, "")}, 2, 404, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			clock := newTestClock()
			f := clock.fetcher(dir)
			f.Retries = tc.retries
			srv := newScriptServer(t, reply(200, listV1))
			url := srv.URL + "/ads.txt"
			if _, err := f.Fetch(ctx, "ads", url); err != nil {
				t.Fatal(err)
			}
			seeded := clock.t
			clock.advance(time.Hour)

			srv.script(tc.steps...)
			res, err := f.Fetch(ctx, "ads", url)
			if n := len(srv.requests()); n != tc.wantAttempts {
				t.Errorf("%d attempts, want %d", n, tc.wantAttempts)
			}
			if res.Status != tc.wantStatus {
				t.Errorf("status %d, want %d", res.Status, tc.wantStatus)
			}
			if tc.wantOK {
				if err != nil || !res.Changed || res.FromCache || readString(t, res.Path) != listV2 {
					t.Errorf("got %+v, %v; want the new list", res, err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), `"ads"`) || !strings.Contains(err.Error(), url) {
				t.Errorf("error %q does not name the list and URL", err)
			}
			want := FetchResult{Path: f.CachePath("ads"), Status: tc.wantStatus, Bytes: int64(len(listV1)), FromCache: true, Fetched: seeded}
			if res != want {
				t.Errorf("got %+v, want %+v", res, want)
			}
			if got := readString(t, res.Path); got != listV1 {
				t.Errorf("cache holds %q after a failure, want the old list", got)
			}
			wantDir(t, dir, "ads.meta.json", "ads.txt")
		})
	}
}

// hangUp closes the connection without a response: a network error.
func hangUp(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

func TestFetchBackoff(t *testing.T) {
	date := func(d time.Duration) string {
		return newTestClock().t.Add(d).Format(http.TimeFormat)
	}
	tests := []struct {
		name      string
		rand      float64
		header    []string
		wantWaits []time.Duration
	}{
		{"doubling", 0.5, nil, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}},
		{"jitter low", 0, nil, []time.Duration{80 * time.Millisecond, 160 * time.Millisecond, 320 * time.Millisecond}},
		{"Retry-After seconds", 0.5, []string{"Retry-After", "2"}, []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}},
		{"Retry-After date", 0.5, []string{"Retry-After", date(3 * time.Second)}, []time.Duration{3 * time.Second, 3 * time.Second, 3 * time.Second}},
		{"Retry-After below backoff", 0.5, []string{"Retry-After", "0"}, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}},
		{"Retry-After too long", 0.5, []string{"Retry-After", "3600"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newTestClock()
			f := clock.fetcher(t.TempDir())
			f.Retries, f.Backoff = 3, 100*time.Millisecond
			f.rand = func() float64 { return tc.rand }
			var waits []time.Duration
			f.sleep = func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				return nil
			}
			srv := newScriptServer(t, reply(503, "", tc.header...))
			_, err := f.Fetch(t.Context(), "ads", srv.URL)
			if err == nil {
				t.Fatal("no error")
			}
			if len(srv.requests()) != 1+len(tc.wantWaits) {
				t.Errorf("%d attempts, want %d", len(srv.requests()), 1+len(tc.wantWaits))
			}
			if !equalDurations(waits, tc.wantWaits) {
				t.Errorf("waited %v, want %v", waits, tc.wantWaits)
			}
			var re *retryableError
			if !errors.As(err, &re) {
				t.Errorf("error %v does not wrap the attempt's error", err)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseRetryAfter(t *testing.T) {
	now := newTestClock().t
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 7 ", 7 * time.Second},
		{"-1", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// blockUntilEnd returns a handler that blocks until the test ends, after
// sending headers and part of the body if partial is set.
func blockUntilEnd(t *testing.T, partial bool) http.HandlerFunc {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	return func(w http.ResponseWriter, _ *http.Request) {
		if partial {
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write([]byte("a.example\n"))
			_ = http.NewResponseController(w).Flush()
		}
		<-release
	}
}

func TestFetchTimeout(t *testing.T) {
	for _, partial := range []bool{false, true} {
		t.Run("partial="+strconv.FormatBool(partial), func(t *testing.T) {
			dir := t.TempDir()
			srv := newScriptServer(t, nil)
			srv.script(blockUntilEnd(t, partial))
			f := &Fetcher{CacheDir: dir, Timeout: 200 * time.Millisecond, Retries: -1}
			// A generous deadline of the caller's own tells which one fired.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			res, err := f.Fetch(ctx, "ads", srv.URL)
			if ctx.Err() != nil {
				t.Fatal("the caller's deadline ended the fetch, not Timeout")
			}
			var ne net.Error
			if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("got %v, want a timeout", err)
			}
			if res.Path != "" || res.FromCache {
				t.Errorf("got %+v with no cache", res)
			}
			wantDir(t, dir)
		})
	}
}

func TestFetchCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := newTestClock().fetcher(t.TempDir())
	srv := newScriptServer(t, reply(200, listV1))
	if _, err := f.Fetch(ctx, "ads", srv.URL); err != nil {
		t.Fatal(err)
	}
	srv.script(func(w http.ResponseWriter, r *http.Request) {
		cancel()
		reply(503, "")(w, r)
	})
	res, err := f.Fetch(ctx, "ads", srv.URL)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if n := len(srv.requests()); n != 1 {
		t.Errorf("%d attempts after cancel, want 1", n)
	}
	if !res.FromCache || readString(t, res.Path) != listV1 {
		t.Errorf("got %+v, want the cached copy", res)
	}
}

func TestFetchTooLarge(t *testing.T) {
	const maxBytes = 1000
	endless := func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length, and more than anyone should read.
		line := []byte(strings.Repeat("x", 99) + "\n")
		for r.Context().Err() == nil {
			if _, err := w.Write(line); err != nil {
				return
			}
		}
	}
	tests := []struct {
		name string
		step func(t *testing.T) http.HandlerFunc
	}{
		{"Content-Length", func(*testing.T) http.HandlerFunc {
			return reply(200, strings.Repeat("x", maxBytes+1))
		}},
		// The limit comes from the header: a body that never arrives is not awaited.
		{"Content-Length, body never sent", func(t *testing.T) http.HandlerFunc {
			block := blockUntilEnd(t, false)
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.FormatInt(1<<40, 10))
				w.WriteHeader(200)
				_ = http.NewResponseController(w).Flush()
				block(w, r)
			}
		}},
		{"no Content-Length", func(*testing.T) http.HandlerFunc { return endless }},
		{"gzip decoded size", func(*testing.T) http.HandlerFunc {
			return gzipped(strings.Repeat("x", 10*maxBytes), nil)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := newTestClock().fetcher(dir)
			f.MaxBytes = maxBytes
			srv := newScriptServer(t, reply(200, listV1))
			if _, err := f.Fetch(t.Context(), "ads", srv.URL); err != nil {
				t.Fatal(err)
			}
			srv.script(tc.step(t))
			res, err := f.Fetch(t.Context(), "ads", srv.URL)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("got %v, want ErrTooLarge", err)
			}
			if n := len(srv.requests()); n != 1 {
				t.Errorf("%d attempts, want 1", n)
			}
			if !res.FromCache || readString(t, res.Path) != listV1 {
				t.Errorf("got %+v, want the old cache", res)
			}
			wantDir(t, dir, "ads.meta.json", "ads.txt")
		})
	}

	t.Run("exactly MaxBytes", func(t *testing.T) {
		f := newTestClock().fetcher(t.TempDir())
		f.MaxBytes = maxBytes
		body := strings.Repeat("x", maxBytes)
		srv := newScriptServer(t, reply(200, body))
		res, err := f.Fetch(t.Context(), "ads", srv.URL)
		if err != nil || res.Bytes != maxBytes {
			t.Fatalf("got %+v, %v", res, err)
		}
	})
}

// gzipped answers with body gzip-encoded, and records whether the client
// asked for gzip.
func gzipped(body string, asked *bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if asked != nil {
			*asked = strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write([]byte(body))
		_ = zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		_, _ = w.Write(buf.Bytes())
	}
}

func TestFetchGzip(t *testing.T) {
	body := strings.Repeat("a.example\n", 1000)
	noDecode := &http.Transport{DisableCompression: true}
	t.Cleanup(noDecode.CloseIdleConnections)
	tests := []struct {
		name      string
		client    *http.Client
		wantAsked bool
	}{
		{"transport decodes", nil, true},
		{"server compresses unasked", &http.Client{Transport: noDecode}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestClock().fetcher(t.TempDir())
			f.Client = tc.client
			var asked bool
			srv := newScriptServer(t, gzipped(body, &asked))
			res, err := f.Fetch(t.Context(), "ads", srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			if asked != tc.wantAsked {
				t.Errorf("client asked for gzip: %v, want %v", asked, tc.wantAsked)
			}
			if got := readString(t, res.Path); got != body || res.Bytes != int64(len(body)) {
				t.Errorf("cached %d bytes (%+v), want the %d decoded bytes", len(got), res, len(body))
			}
		})
	}

	t.Run("unsupported encoding", func(t *testing.T) {
		dir := t.TempDir()
		f := newTestClock().fetcher(dir)
		f.Client = &http.Client{Transport: noDecode}
		srv := newScriptServer(t, reply(200, "\x00\x01", "Content-Encoding", "br"))
		if _, err := f.Fetch(t.Context(), "ads", srv.URL); err == nil || !strings.Contains(err.Error(), "br") {
			t.Errorf("got %v, want an unsupported encoding error", err)
		}
		wantDir(t, dir)
	})
}

func TestFetchRejectsNames(t *testing.T) {
	srv := newScriptServer(t, reply(200, listV1))
	for _, name := range []string{"", ".", "..", "../x", "a/b", `a\b`, "/abs", ".hidden", "a b", "ä", strings.Repeat("a", maxListNameLen+1)} {
		parent := t.TempDir()
		f := &Fetcher{CacheDir: filepath.Join(parent, "cache")}
		res, err := f.Fetch(t.Context(), name, srv.URL)
		if err == nil || res.Path != "" {
			t.Errorf("name %q: got %+v, %v; want an error", name, res, err)
		}
		if _, ok := f.Cached(name, srv.URL); ok {
			t.Errorf("name %q: Cached reported a copy", name)
		}
		wantDir(t, parent) // not even the cache directory
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("%d requests for invalid names", n)
	}
	for _, name := range []string{"ads", "A-b_c.1", "x..y", "a."} {
		if err := validListName(name); err != nil {
			t.Errorf("name %q refused: %v", name, err)
		}
	}
}

func TestFetchRejectsURLs(t *testing.T) {
	srv := newScriptServer(t, reply(200, listV1))
	for _, url := range []string{"ftp://127.0.0.1/list", "file:///etc/hosts", "http:///list", "127.0.0.1/list", "://x", ""} {
		dir := t.TempDir()
		f := &Fetcher{CacheDir: dir}
		if res, err := f.Fetch(t.Context(), "ads", url); err == nil || res.Path != "" {
			t.Errorf("URL %q: got %+v, %v; want an error", url, res, err)
		}
		wantDir(t, dir)
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("%d requests", n)
	}
}

// Only http and https, even with a client that can do more.
func TestFetchFileTransport(t *testing.T) {
	files := t.TempDir()
	if err := os.WriteFile(filepath.Join(files, "list.txt"), []byte(listV1), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	tr.RegisterProtocol("file", http.NewFileTransport(http.Dir(files)))
	t.Cleanup(tr.CloseIdleConnections)
	dir := t.TempDir()
	f := &Fetcher{CacheDir: dir, Client: &http.Client{Transport: tr}}
	if res, err := f.Fetch(t.Context(), "ads", "file://localhost/list.txt"); err == nil || res.Path != "" {
		t.Errorf("file URL: got %+v, %v; want an error", res, err)
	}
	srv := newScriptServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file://localhost/list.txt", http.StatusFound)
	})
	if res, err := f.Fetch(t.Context(), "ads", srv.URL); !errors.Is(err, errRedirectScheme) || res.Path != "" {
		t.Errorf("redirect to a file URL: got %+v, %v; want errRedirectScheme", res, err)
	}
	wantDir(t, dir)
}

func TestFetchRedirects(t *testing.T) {
	f := newTestClock().fetcher(t.TempDir())
	srv := newScriptServer(t, nil)
	srv.script(
		func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/moved", http.StatusFound) },
		reply(200, listV1),
	)
	if res, err := f.Fetch(t.Context(), "ok", srv.URL); err != nil || readString(t, res.Path) != listV1 {
		t.Fatalf("http redirect: got %+v, %v", res, err)
	}

	for _, target := range []string{"ftp://127.0.0.1/list", "file:///etc/hosts"} {
		srv.script(func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, target, http.StatusFound) })
		res, err := f.Fetch(t.Context(), "bad", srv.URL)
		if !errors.Is(err, errRedirectScheme) || res.Path != "" {
			t.Errorf("redirect to %s: got %+v, %v", target, res, err)
		}
		if n := len(srv.requests()); n != 1 {
			t.Errorf("redirect to %s: %d attempts, want 1", target, n)
		}
	}

	// A caller's client keeps its own policy, and gains the scheme check.
	var calls int
	own := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { calls++; return nil }}
	f2 := newTestClock().fetcher(t.TempDir())
	f2.Client = own
	srv.script(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://127.0.0.1/", http.StatusFound)
	})
	if _, err := f2.Fetch(t.Context(), "bad", srv.URL); !errors.Is(err, errRedirectScheme) || calls != 0 {
		t.Errorf("caller's client: got %v after %d calls to its CheckRedirect", err, calls)
	}
	srv.script(func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/moved", http.StatusFound) }, reply(200, listV1))
	if _, err := f2.Fetch(t.Context(), "ok", srv.URL); err != nil || calls != 1 {
		t.Errorf("caller's client: got %v after %d calls to its CheckRedirect, want 1", err, calls)
	}
	if own.CheckRedirect == nil || own.Transport != nil {
		t.Error("the caller's client was modified")
	}
}

func TestFetchURLChange(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	f := newTestClock().fetcher(dir)
	f.Retries = -1
	srv := newScriptServer(t, reply(200, listV1, "ETag", `"v1"`, "Last-Modified", lastMod))
	urlA, urlB := srv.URL+"/a.txt", srv.URL+"/b.txt"
	if _, err := f.Fetch(ctx, "ads", urlA); err != nil {
		t.Fatal(err)
	}

	srv.script(reply(500, ""))
	res, err := f.Fetch(ctx, "ads", urlB)
	if err == nil || res.Path != "" || res.FromCache {
		t.Errorf("failed fetch of a new URL: got %+v, %v; want no cache", res, err)
	}
	if h := srv.requests()[0].Header; h.Get("If-None-Match") != "" || h.Get("If-Modified-Since") != "" {
		t.Errorf("conditional headers sent for a new URL: %v", h)
	}
	if readString(t, f.CachePath("ads")) != listV1 {
		t.Error("failed fetch touched the cache")
	}
	if _, ok := f.Cached("ads", urlB); ok {
		t.Error("Cached offers URL A's copy for URL B")
	}
	if _, ok := f.Cached("ads", urlA); !ok {
		t.Error("Cached lost URL A's copy")
	}

	srv.script(reply(200, listV1))
	res, err = f.Fetch(ctx, "ads", urlB)
	if err != nil || !res.Changed {
		t.Errorf("fetch of the new URL, same content: got %+v, %v; want it rewritten", res, err)
	}
	if m := readMeta(t, f, "ads"); m.URL != urlB || m.ETag != "" {
		t.Errorf("meta %+v", m)
	}
	if _, ok := f.Cached("ads", urlA); ok {
		t.Error("Cached still offers URL A")
	}
}

func TestCached(t *testing.T) {
	dir := t.TempDir()
	clock := newTestClock()
	f := clock.fetcher(dir)
	srv := newScriptServer(t, reply(200, listV1, "ETag", `"v1"`))
	if _, ok := f.Cached("ads", srv.URL); ok {
		t.Fatal("Cached reports a copy before any fetch")
	}
	if _, err := f.Fetch(t.Context(), "ads", srv.URL); err != nil {
		t.Fatal(err)
	}
	got, ok := f.Cached("ads", srv.URL)
	want := FetchResult{Path: f.CachePath("ads"), Bytes: int64(len(listV1)), FromCache: true, Fetched: clock.t}
	if !ok || got != want {
		t.Errorf("Cached: got %+v, %v; want %+v", got, ok, want)
	}

	// A file that no longer matches its metadata is not trusted, neither
	// for startup nor for revalidation.
	if err := os.WriteFile(f.CachePath("ads"), []byte("edited.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Cached("ads", srv.URL); ok {
		t.Error("Cached trusts an edited file")
	}
	srv.script(reply(200, listV1))
	res, err := f.Fetch(t.Context(), "ads", srv.URL)
	if err != nil || !res.Changed || readString(t, res.Path) != listV1 {
		t.Errorf("got %+v, %v; want the list restored", res, err)
	}
	if h := srv.requests()[0].Header; h.Get("If-None-Match") != "" {
		t.Error("revalidated an edited file")
	}

	if err := os.Remove(f.metaPath("ads")); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Cached("ads", srv.URL); ok {
		t.Error("Cached trusts a file without metadata")
	}
}

// A failure to write the metadata after the new list was saved still hands
// the caller the list.
func TestFetchMetaWriteFails(t *testing.T) {
	dir := t.TempDir()
	f := newTestClock().fetcher(dir)
	// A directory where the metadata goes makes its rename fail.
	if err := os.Mkdir(f.metaPath("ads"), 0o700); err != nil {
		t.Fatal(err)
	}
	srv := newScriptServer(t, reply(200, listV1))
	res, err := f.Fetch(t.Context(), "ads", srv.URL)
	if err == nil || !strings.Contains(err.Error(), "metadata") {
		t.Errorf("got %v, want a metadata error", err)
	}
	if !res.FromCache || !res.Changed || readString(t, res.Path) != listV1 {
		t.Errorf("got %+v, want the saved list", res)
	}
	wantDir(t, dir, "ads.meta.json", "ads.txt")
}

func TestFetchBadCacheDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := newScriptServer(t, reply(200, listV1))
	for _, dir := range []string{"", file} {
		f := &Fetcher{CacheDir: dir}
		if _, err := f.Fetch(t.Context(), "ads", srv.URL); err == nil {
			t.Errorf("CacheDir %q: no error", dir)
		}
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("%d requests", n)
	}
}

func TestFetchCreatesCacheDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	f := &Fetcher{CacheDir: dir}
	srv := newScriptServer(t, reply(200, listV1))
	if _, err := f.Fetch(t.Context(), "ads", srv.URL); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 {
		t.Errorf("cache directory mode %v is open to others", perm)
	}
}

// Fetches of one name take turns: a second one waits, it does not race the
// first to the server.
func TestFetchSerializesName(t *testing.T) {
	f := newTestClock().fetcher(t.TempDir())
	srv := newScriptServer(t, reply(200, listV1))
	unlock, err := f.lock(t.Context(), "ads")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := f.Fetch(ctx, "ads", srv.URL); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v while another fetch holds the name, want a deadline error", err)
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("%d requests while another fetch holds the name", n)
	}
	if _, err := f.Fetch(t.Context(), "other", srv.URL); err != nil {
		t.Errorf("another name waited: %v", err)
	}
	unlock()
	if _, err := f.Fetch(t.Context(), "ads", srv.URL); err != nil {
		t.Errorf("after unlock: %v", err)
	}
}

func TestJitter(t *testing.T) {
	for _, tc := range []struct {
		r    float64
		want time.Duration
	}{{0, 90 * time.Second}, {0.5, 100 * time.Second}, {0.75, 105 * time.Second}} {
		f := &Fetcher{rand: func() float64 { return tc.r }}
		if got := f.jitter(100*time.Second, refreshJitter); got != tc.want {
			t.Errorf("jitter with r=%v: %v, want %v", tc.r, got, tc.want)
		}
	}
	// The default source stays within bounds and is not constant.
	f := &Fetcher{}
	seen := map[time.Duration]bool{}
	for range 100 {
		d := f.jitter(time.Second, 0.1)
		if d < 900*time.Millisecond || d > 1100*time.Millisecond {
			t.Fatalf("jitter out of bounds: %v", d)
		}
		seen[d] = true
	}
	if len(seen) < 2 {
		t.Error("jitter is constant")
	}
}

type refreshCall struct {
	res FetchResult
	err error
}

func TestRefresh(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := &Fetcher{CacheDir: t.TempDir()}
	srv := newScriptServer(t, reply(200, listV1))
	calls := make(chan refreshCall)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		f.Refresh(ctx, "ads", srv.URL, 20*time.Millisecond, func(res FetchResult, err error) {
			select {
			case calls <- refreshCall{res, err}:
			case <-ctx.Done():
			}
		})
	}()
	for i := range 3 {
		select {
		case c := <-calls:
			if c.err != nil || c.res.Status != 200 || c.res.Path != f.CachePath("ads") {
				t.Errorf("call %d: %+v, %v", i, c.res, c.err)
			}
			if c.res.Changed != (i == 0) {
				t.Errorf("call %d: Changed %v", i, c.res.Changed)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d refreshes", i)
		}
	}
	cancel()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Refresh did not return after cancel")
	}
}

// With the waits injected, Refresh is checked step by step: the first fetch
// comes after the first wait, each wait is jittered, an error is reported,
// and a fetch cut short by cancellation is not.
func TestRefreshSteps(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := newTestClock().fetcher(t.TempDir())
	f.Retries = -1
	rands := []float64{0, 0.75, 0.5, 0.5}
	f.rand = func() float64 {
		r := rands[0]
		rands = rands[1:]
		return r
	}
	srv := newScriptServer(t, reply(200, listV1), reply(404, ""), func(w http.ResponseWriter, r *http.Request) {
		cancel()
		reply(200, listV2)(w, r)
	})
	var waits []time.Duration
	f.sleep = func(ctx context.Context, d time.Duration) error {
		if len(srv.requests()) != len(waits) {
			t.Errorf("wait %d after %d fetches", len(waits), len(srv.requests()))
		}
		waits = append(waits, d)
		return ctx.Err()
	}
	var calls []refreshCall
	f.Refresh(ctx, "ads", srv.URL, 100*time.Second, func(res FetchResult, err error) {
		calls = append(calls, refreshCall{res, err})
	})

	wantWaits := []time.Duration{90 * time.Second, 105 * time.Second, 100 * time.Second}
	if !equalDurations(waits, wantWaits) {
		t.Errorf("waits %v, want %v", waits, wantWaits)
	}
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2: %+v", len(calls), calls)
	}
	if calls[0].err != nil || !calls[0].res.Changed {
		t.Errorf("first call: %+v", calls[0])
	}
	if calls[1].err == nil || calls[1].res.Status != 404 || !calls[1].res.FromCache {
		t.Errorf("second call: %+v", calls[1])
	}
}

func TestRefreshBadInterval(t *testing.T) {
	f := &Fetcher{CacheDir: t.TempDir(), sleep: func(context.Context, time.Duration) error {
		t.Error("Refresh waited with a zero interval")
		return nil
	}}
	f.Refresh(t.Context(), "ads", "http://127.0.0.1:1/", 0, func(FetchResult, error) { t.Error("Refresh fetched with a zero interval") })
}
