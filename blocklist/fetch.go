package blocklist

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for Fetcher's zero-valued fields.
const (
	defaultFetchMaxBytes = 64 << 20
	defaultFetchTimeout  = 30 * time.Second
	defaultFetchRetries  = 2
	defaultFetchBackoff  = time.Second
	defaultUserAgent     = "dnsfence"
)

const (
	// maxRetryAfter bounds how long a Retry-After may hold up Fetch; a server
	// asking for more is not retried at once (Refresh tries again later).
	maxRetryAfter = time.Minute
	maxBackoff    = time.Minute
	backoffJitter = 0.2 // ±20% on each retry delay
	refreshJitter = 0.1 // ±10% on each refresh interval, so lists sharing a host spread out
	maxRedirects  = 10  // as net/http does when CheckRedirect is nil
	drainLimit    = 4 << 10
	// maxListNameLen leaves room, within a 255-byte file name, for the
	// ".meta.json" suffix and the temp file decorations.
	maxListNameLen = 200
)

// ErrTooLarge is returned, wrapped, by Fetch when a list is larger than
// Fetcher.MaxBytes.
var ErrTooLarge = errors.New("list too large")

// errRedirectScheme marks a redirect away from http(s); it is not retried.
var errRedirectScheme = errors.New("redirect to a non-http(s) URL")

// Fetcher downloads URL lists into a cache directory. The caller parses the
// cache file like a local list file, so a list survives restarts while its
// server is down.
//
// A Fetcher is safe for concurrent use; Fetch calls for one list name are
// serialized. Its fields must not change after the first Fetch, and two
// Fetchers must not share a CacheDir.
type Fetcher struct {
	Client    *http.Client  // nil: a clone of http.DefaultTransport (proxy from the environment); redirects away from http(s) are refused either way
	CacheDir  string        // holds <name>.txt and <name>.meta.json; created 0750 if missing
	MaxBytes  int64         // refuse larger bodies, counted after gzip decoding; <= 0: 64 MiB
	Timeout   time.Duration // per attempt, including reading the body; <= 0: 30s
	Retries   int           // extra attempts after network errors, 5xx and 429; 0: 2, < 0: none
	Backoff   time.Duration // first retry delay, doubled on each retry (capped at 1m), ±20% jitter; <= 0: 1s
	UserAgent string        // "": "dnsfence"
	// Check, if set, vets a new download before it replaces the cached copy (e.g. that it parses
	// to at least one rule): a server's error page or an empty body must not become the copy a
	// restart without network falls back on. An error keeps the old copy and is returned.
	Check func(io.Reader) error

	// Test hooks; nil means the real thing.
	now   func() time.Time
	rand  func() float64                                   // uniform in [0, 1)
	sleep func(ctx context.Context, d time.Duration) error // returns ctx.Err() if ctx ends first

	clientOnce sync.Once
	client     *http.Client

	mu    sync.Mutex
	locks map[string]chan struct{} // per list name; a channel so that waiting honours ctx
}

// FetchResult describes one Fetch.
type FetchResult struct {
	Path      string    // the cache file to parse; set when err == nil or FromCache
	Changed   bool      // new content was written (false on 304 or an identical body)
	Status    int       // last HTTP status seen, 0 if none
	Bytes     int64     // size of the cache file
	FromCache bool      // Fetch failed, but Path holds a copy of this URL's list
	Fetched   time.Time // last successful download or revalidation of Path
}

// listMeta is saved beside a cache file as <name>.meta.json.
type listMeta struct {
	URL          string    `json:"url"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	SHA256       string    `json:"sha256"` // hex, of the cache file
	Fetched      time.Time `json:"fetched"`
}

// cacheState is a cache file that matches its metadata.
type cacheState struct {
	meta listMeta
	size int64
}

// retryableError marks an attempt's failure as worth another attempt.
type retryableError struct {
	err   error
	after time.Duration // the server's Retry-After, 0 if none
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// CachePath is where name's cached copy lives, whether or not it exists.
// name must be a valid list name (see Fetch).
func (f *Fetcher) CachePath(name string) string {
	return filepath.Join(f.CacheDir, name+".txt")
}

func (f *Fetcher) metaPath(name string) string {
	return filepath.Join(f.CacheDir, name+".meta.json")
}

// Cached returns the cached copy of rawURL's list for name without using the
// network, with FromCache set. It reports false if there is none, if it was
// downloaded from another URL, or if it does not match its metadata (the
// file is read to check its SHA-256). Meant for startup: run concurrently
// with a Fetch of the same name, it may miss a copy being replaced.
func (f *Fetcher) Cached(name, rawURL string) (FetchResult, bool) {
	if validListName(name) != nil {
		return FetchResult{}, false
	}
	st := f.cached(name, rawURL)
	if st == nil {
		return FetchResult{}, false
	}
	return FetchResult{Path: f.CachePath(name), Bytes: st.size, FromCache: true, Fetched: st.meta.Fetched}, true
}

// Fetch downloads rawURL, an http or https URL, into name's cache file. name
// is a list name from the config: ASCII letters, digits, '-', '_' and '.',
// not starting with '.'.
//
// If the cache holds a copy of the same URL, Fetch revalidates it with
// If-None-Match / If-Modified-Since; a 304 or an identical body leaves the
// file as it is (Changed false). A new body is written aside, synced and
// renamed over the cache file, then its metadata likewise, so a failed or
// interrupted Fetch leaves the previous copy whole.
//
// When the download fails and a copy of the same URL is cached, Fetch returns
// that copy with FromCache set, and the error. Otherwise an error comes with
// an empty Path. Errors name the list and, if it parses, the URL (without
// its password).
func (f *Fetcher) Fetch(ctx context.Context, name, rawURL string) (FetchResult, error) {
	res, err := f.fetch(ctx, name, rawURL)
	if err != nil {
		return res, fmt.Errorf("fetch list %q: %w", name, err)
	}
	return res, nil
}

func (f *Fetcher) fetch(ctx context.Context, name, rawURL string) (FetchResult, error) {
	if err := validListName(name); err != nil {
		return FetchResult{}, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// Not the *url.Error itself: it quotes the URL with its password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return FetchResult{}, fmt.Errorf("invalid URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return FetchResult{}, fmt.Errorf("%s: not an http or https URL", u.Redacted())
	}
	if f.CacheDir == "" {
		return FetchResult{}, errors.New("no cache directory")
	}
	if err := os.MkdirAll(f.CacheDir, 0o750); err != nil {
		return FetchResult{}, fmt.Errorf("create cache directory: %w", err)
	}
	unlock, err := f.lock(ctx, name)
	if err != nil {
		return FetchResult{}, err
	}
	defer unlock()

	prev := f.cached(name, rawURL)
	status := 0
	for attempt := 0; ; attempt++ {
		res, err := f.attempt(ctx, name, rawURL, u.Redacted(), prev)
		if res.Status != 0 {
			status = res.Status
		}
		if err == nil {
			return res, nil
		}
		delay, retry := f.retryDelay(err, attempt)
		if retry {
			if werr := f.wait(ctx, delay); werr != nil {
				err = fmt.Errorf("%w (retry abandoned: %w)", err, werr)
				retry = false
			}
		}
		if retry {
			continue
		}
		if attempt > 0 {
			err = fmt.Errorf("after %d attempts: %w", attempt+1, err)
		}
		switch {
		case res.Path != "": // saved, but its metadata was not
			return res, err
		case prev != nil:
			return FetchResult{Path: f.CachePath(name), Status: status, Bytes: prev.size, FromCache: true, Fetched: prev.meta.Fetched}, err
		default:
			return FetchResult{Status: status}, err
		}
	}
}

// attempt makes one request. Errors worth retrying are *retryableError.
func (f *Fetcher) attempt(ctx context.Context, name, rawURL, shown string, prev *cacheState) (FetchResult, error) {
	actx, cancel := context.WithTimeout(ctx, positiveOr(f.Timeout, defaultFetchTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, rawURL, nil)
	if err != nil {
		return FetchResult{}, err
	}
	ua := f.UserAgent
	if ua == "" {
		ua = defaultUserAgent
	}
	req.Header.Set("User-Agent", ua)
	if prev != nil {
		if prev.meta.ETag != "" {
			req.Header.Set("If-None-Match", prev.meta.ETag)
		}
		if prev.meta.LastModified != "" {
			req.Header.Set("If-Modified-Since", prev.meta.LastModified)
		}
	}
	resp, err := f.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, errRedirectScheme) {
			return FetchResult{}, err
		}
		return FetchResult{}, &retryableError{err: err} // *url.Error names the URL
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusOK:
		return f.save(actx, name, rawURL, shown, resp, prev)
	case resp.StatusCode == http.StatusNotModified && prev != nil:
		return f.revalidated(name, resp, prev)
	}
	// Reading a little of an error body lets the connection be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	res := FetchResult{Status: resp.StatusCode}
	err = fmt.Errorf("GET %s: %s", shown, resp.Status)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		after := parseRetryAfter(resp.Header.Get("Retry-After"), f.clock())
		if after > 0 {
			err = fmt.Errorf("%w (Retry-After %s)", err, after)
		}
		return res, &retryableError{err: err, after: after}
	}
	return res, err
}

// save streams a 200 response into a temp file and renames it over the cache
// file unless its content is that of prev.
func (f *Fetcher) save(actx context.Context, name, rawURL, shown string, resp *http.Response, prev *cacheState) (FetchResult, error) {
	res := FetchResult{Status: resp.StatusCode}
	maxBytes := f.MaxBytes
	if maxBytes <= 0 {
		maxBytes = defaultFetchMaxBytes
	}
	var body io.Reader = resp.Body
	// The transport decodes gzip itself (resp.Uncompressed) unless the
	// caller's client disabled that; some servers compress regardless.
	switch enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); {
	case resp.Uncompressed || enc == "" || enc == "identity":
		if resp.ContentLength > maxBytes {
			return res, fmt.Errorf("GET %s: %w: Content-Length %d is over %d bytes", shown, ErrTooLarge, resp.ContentLength, maxBytes)
		}
	case enc == "gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return res, &retryableError{err: fmt.Errorf("GET %s: gzip: %w", shown, err)}
		}
		defer zr.Close()
		body = zr
	default:
		return res, fmt.Errorf("GET %s: unsupported Content-Encoding %q", shown, enc)
	}

	tmp, err := os.CreateTemp(f.CacheDir, "."+name+".*.tmp")
	if err != nil {
		return res, fmt.Errorf("cache: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	src := &readErrRecorder{r: body}
	h := sha256.New()
	// One byte past the limit tells a body of exactly MaxBytes from a larger one.
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(src, maxBytes+1))
	if err != nil {
		if src.err == nil {
			return res, fmt.Errorf("cache: %w", err)
		}
		if cerr := context.Cause(actx); cerr != nil && !errors.Is(src.err, cerr) {
			// Make a timeout recognisable whatever the transport says.
			err = fmt.Errorf("%w (%w)", src.err, cerr)
		} else {
			err = src.err
		}
		return res, &retryableError{err: fmt.Errorf("GET %s: read body: %w", shown, err)}
	}
	if n > maxBytes {
		return res, fmt.Errorf("GET %s: %w: body is over %d bytes", shown, ErrTooLarge, maxBytes)
	}

	meta := listMeta{
		URL:          rawURL,
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
		SHA256:       hex.EncodeToString(h.Sum(nil)),
		Fetched:      f.clock(),
	}
	res.Path, res.Bytes, res.Fetched = f.CachePath(name), n, meta.Fetched
	if f.Check != nil && (prev == nil || prev.meta.SHA256 != meta.SHA256) {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return FetchResult{Status: res.Status}, fmt.Errorf("cache: %w", err)
		}
		if err := f.Check(tmp); err != nil {
			return FetchResult{Status: res.Status}, fmt.Errorf("GET %s: %w", shown, err)
		}
	}
	if prev == nil || prev.meta.SHA256 != meta.SHA256 {
		if err := commitTemp(tmp, res.Path); err != nil {
			return FetchResult{Status: res.Status}, fmt.Errorf("cache: %w", err)
		}
		renamed = true
		res.Changed = true
	}
	if err := f.writeMeta(name, meta); err != nil {
		res.FromCache = true
		return res, err
	}
	return res, nil
}

// revalidated records a 304: the cache file stays, its metadata is refreshed.
func (f *Fetcher) revalidated(name string, resp *http.Response, prev *cacheState) (FetchResult, error) {
	meta := prev.meta
	meta.Fetched = f.clock()
	// A 304 may carry updated validators (RFC 9110, 15.4.5).
	if v := resp.Header.Get("ETag"); v != "" {
		meta.ETag = v
	}
	if v := resp.Header.Get("Last-Modified"); v != "" {
		meta.LastModified = v
	}
	res := FetchResult{Path: f.CachePath(name), Status: resp.StatusCode, Bytes: prev.size, Fetched: meta.Fetched}
	if err := f.writeMeta(name, meta); err != nil {
		res.FromCache = true
		return res, err
	}
	return res, nil
}

// writeMeta replaces name's metadata atomically and makes both renames durable.
func (f *Fetcher) writeMeta(name string, meta listMeta) error {
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return fmt.Errorf("cache metadata: %w", err)
	}
	tmp, err := os.CreateTemp(f.CacheDir, "."+name+".meta.*.tmp")
	if err != nil {
		return fmt.Errorf("cache metadata: %w", err)
	}
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = commitTemp(tmp, f.metaPath(name))
	}
	if err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("cache metadata: %w", err)
	}
	syncDir(f.CacheDir)
	return nil
}

// cached returns name's cache if it was downloaded from rawURL and still has
// the content its metadata records, else nil.
func (f *Fetcher) cached(name, rawURL string) *cacheState {
	data, err := os.ReadFile(f.metaPath(name))
	if err != nil {
		return nil
	}
	var meta listMeta
	if json.Unmarshal(data, &meta) != nil || meta.URL != rawURL {
		return nil
	}
	file, err := os.Open(f.CachePath(name))
	if err != nil {
		return nil
	}
	defer file.Close()
	// Hashing the file, not trusting its size, catches a crash between the
	// two renames and a file edited by hand: a 304 must not bless either.
	h := sha256.New()
	n, err := io.Copy(h, file)
	if err != nil || hex.EncodeToString(h.Sum(nil)) != meta.SHA256 {
		return nil
	}
	return &cacheState{meta: meta, size: n}
}

// Refresh calls Fetch for name every interval, each wait jittered by ±10%,
// until ctx is done, and calls done (if non-nil) after each attempt. The
// first attempt comes after the first wait: the caller fetches at startup.
// An attempt cut short by ctx is not reported. Refresh returns when ctx is
// done, or at once if interval is not positive.
func (f *Fetcher) Refresh(ctx context.Context, name, rawURL string, interval time.Duration, done func(FetchResult, error)) {
	if interval <= 0 {
		return
	}
	for {
		if f.wait(ctx, f.jitter(interval, refreshJitter)) != nil {
			return
		}
		res, err := f.Fetch(ctx, name, rawURL)
		if ctx.Err() != nil {
			return
		}
		if done != nil {
			done(res, err)
		}
	}
}

// retryDelay says whether err after attempt (0-based) deserves another
// attempt, and after how long.
func (f *Fetcher) retryDelay(err error, attempt int) (time.Duration, bool) {
	retries := f.Retries
	if retries == 0 {
		retries = defaultFetchRetries
	}
	var re *retryableError
	if !errors.As(err, &re) || attempt >= retries || re.after > maxRetryAfter {
		return 0, false
	}
	backoff := positiveOr(f.Backoff, defaultFetchBackoff)
	d := backoff
	for i := 0; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, max(backoff, maxBackoff))
	return max(f.jitter(d, backoffJitter), re.after), true
}

// lock makes Fetch calls for one name take turns: the cache file and its
// metadata are written as a pair.
func (f *Fetcher) lock(ctx context.Context, name string) (unlock func(), err error) {
	f.mu.Lock()
	if f.locks == nil {
		f.locks = make(map[string]chan struct{})
	}
	ch, ok := f.locks[name]
	if !ok {
		ch = make(chan struct{}, 1)
		f.locks[name] = ch
	}
	f.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for another fetch of the list: %w", ctx.Err())
	}
}

func (f *Fetcher) httpClient() *http.Client {
	f.clientOnce.Do(func() {
		var c http.Client
		if f.Client != nil {
			c = *f.Client // a copy, so that adding the redirect check leaves the caller's client alone
		} else if t, ok := http.DefaultTransport.(*http.Transport); ok {
			c.Transport = t.Clone()
		}
		c.CheckRedirect = httpRedirectsOnly(c.CheckRedirect)
		f.client = &c
	})
	return f.client
}

// httpRedirectsOnly refuses redirects away from http(s), then applies next
// (or net/http's default limit if next is nil).
func httpRedirectsOnly(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("%w: %s", errRedirectScheme, req.URL.Redacted())
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
}

func (f *Fetcher) clock() time.Time {
	if f.now != nil {
		return f.now()
	}
	return time.Now()
}

// jitter spreads d uniformly over d±frac·d.
func (f *Fetcher) jitter(d time.Duration, frac float64) time.Duration {
	r := rand.Float64
	if f.rand != nil {
		r = f.rand
	}
	return d + time.Duration(float64(d)*frac*(2*r()-1))
}

// wait sleeps for d or until ctx is done, whichever comes first.
func (f *Fetcher) wait(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err // not left to select, which picks at random when both are ready
	}
	if f.sleep != nil {
		return f.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// validListName accepts names that are plain file names inside CacheDir.
// A leading '.' is refused: ".." would escape, and temp files start with '.'.
func validListName(name string) error {
	// Callers name the list around this error already.
	switch {
	case name == "":
		return errors.New("empty list name")
	case len(name) > maxListNameLen:
		return fmt.Errorf("invalid list name: longer than %d bytes", maxListNameLen)
	case name[0] == '.':
		return errors.New("invalid list name: starts with '.'")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return errors.New("invalid list name: only ASCII letters, digits, '-', '_' and '.' are allowed")
		}
	}
	return nil
}

// parseRetryAfter reads a Retry-After value: seconds or an HTTP date. It
// returns 0 if v is empty, invalid or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// commitTemp syncs and closes tmp, then renames it to path.
func commitTemp(tmp *os.File, path string) error {
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// syncDir makes renames in dir durable. Best effort: a crash before it only
// loses the newest copy, and some systems cannot sync a directory.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// readErrRecorder tells a network read error from a disk write error in io.Copy.
type readErrRecorder struct {
	r   io.Reader
	err error
}

func (r *readErrRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

func positiveOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
