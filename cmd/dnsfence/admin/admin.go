// Package admin is dnsfence's HTTP surface besides /metrics: the JSON admin API under /api/
// (stats, pause and resume blocking, reload, check a name), the /report page, /readyz and the
// optional profiler, plus the in-memory state only they read (query stats, the pause timer,
// upstream liveness).
//
// Auth: with http.token (or http.token_file) set, every /api/ request (and /report) must carry
// "Authorization: Bearer TOKEN"; without one, /api/ is open, which config validation allows only
// on a loopback http.listen. /metrics, /healthz and /readyz are always open.
//
// It must not reach into the serving state: reloads and explanations come in as functions from
// cmd/dnsfence, which owns the one reload loop.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/blocklist"
)

// API serves /api/.
type API struct {
	// tokenHash is the SHA-256 of the token; nil leaves /api/ open. Hashing first makes the
	// constant-time compare independent of the token's length too.
	tokenHash []byte
	stats     *Stats
	pause     *Pauser
	// reload runs one reload in the serve loop (the one SIGHUP and file changes use) and waits
	// for its result.
	reload func(ctx context.Context) (Reloaded, error)
	// explain answers GET /api/check?name=NAME.
	explain func(name string) (any, error)
	// explainIP answers GET /api/check?ip=ADDR (nil: egress off).
	explainIP func(netip.Addr) (any, error)
	routes    map[string]route
}

type route struct {
	method string
	handle http.HandlerFunc
}

func New(token string, st *Stats, p *Pauser, reload func(context.Context) (Reloaded, error), explain func(string) (any, error)) *API {
	a := &API{stats: st, pause: p, reload: reload, explain: explain}
	if token != "" {
		h := sha256.Sum256([]byte(token))
		a.tokenHash = h[:]
	}
	a.routes = map[string]route{
		"/api/stats":           {http.MethodGet, a.serveStats},
		"/api/blocking":        {http.MethodGet, a.serveBlocking},
		"/api/blocking/pause":  {http.MethodPost, a.servePause},
		"/api/blocking/resume": {http.MethodPost, a.serveResume},
		"/api/lists/reload":    {http.MethodPost, a.serveReload},
		"/api/check":           {http.MethodGet, a.serveCheck},
	}
	return a
}

// ServeHTTP authenticates first (so unknown paths do not reveal what exists), then routes.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.authorized(r) {
		unauthorized(w)
		return
	}
	rt, ok := a.routes[r.URL.Path]
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "no such endpoint %s", r.URL.Path)
	case r.Method != rt.method:
		w.Header().Set("Allow", rt.method)
		writeError(w, http.StatusMethodNotAllowed, "%s %s: use %s", r.Method, r.URL.Path, rt.method)
	default:
		rt.handle(w, r)
	}
}

// requireToken guards another handler (the report, which names clients) with the same rule.
func (a *API) RequireToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			unauthorized(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *API) authorized(r *http.Request) bool {
	if a.tokenHash == nil {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(h[:], a.tokenHash) == 1
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="dnsfence"`)
	writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (Authorization: Bearer TOKEN)")
}

func (a *API) serveStats(w http.ResponseWriter, r *http.Request) {
	top := 20
	if s := r.URL.Query().Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > TopKCapacity {
			writeError(w, http.StatusBadRequest, "top: want a number from 1 to %d", TopKCapacity)
			return
		}
		top = n
	}
	writeJSON(w, http.StatusOK, a.stats.Report(top, a.blocking()))
}

func (a *API) blocking() BlockingState {
	paused, until := a.pause.State()
	if !paused {
		return BlockingState{}
	}
	u := until.UTC()
	return BlockingState{Paused: true, Until: &u}
}

func (a *API) serveBlocking(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.blocking())
}

func (a *API) servePause(w http.ResponseWriter, r *http.Request) {
	s := r.URL.Query().Get("for")
	if s == "" {
		writeError(w, http.StatusBadRequest, "for is required: how long to pause, e.g. ?for=5m (at most %s)", MaxPause)
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > MaxPause {
		writeError(w, http.StatusBadRequest, "for=%s: want a duration such as 30s, 5m or 1h, above 0 and at most %s", s, MaxPause)
		return
	}
	a.pause.Start(d, r.RemoteAddr)
	writeJSON(w, http.StatusOK, a.blocking())
}

func (a *API) serveResume(w http.ResponseWriter, r *http.Request) {
	was := a.pause.Resume(r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]bool{"paused": false, "was_paused": was})
}

// ErrShuttingDown answers a reload asked for while the server stops.
var ErrShuttingDown = errors.New("shutting down")

func (a *API) serveReload(w http.ResponseWriter, r *http.Request) {
	res, err := a.reload(r.Context())
	switch {
	case errors.Is(err, ErrShuttingDown):
		writeError(w, http.StatusServiceUnavailable, "%v", err)
	case err != nil:
		writeError(w, http.StatusInternalServerError, "%v", err)
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

func (a *API) serveCheck(w http.ResponseWriter, r *http.Request) {
	if ip := r.URL.Query().Get("ip"); ip != "" {
		serveCheckIP(w, a.explainIP, ip)
		return
	}
	name := r.URL.Query().Get("name")
	if _, ok := dns.IsDomainName(name); name == "" || !ok {
		writeError(w, http.StatusBadRequest, "name: want a domain name, e.g. ?name=alipay.com")
		return
	}
	v, err := a.explain(name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// CheckResult is the answer of /api/check: the verdict, the rule that decided (or the allow rule
// that overrode the block rules), and every matching rule with the file and line it is on.
type CheckResult struct {
	Name      string      `json:"name"`
	Blocked   bool        `json:"blocked"`
	List      string      `json:"list,omitempty"`
	Rule      string      `json:"rule,omitempty"`
	App       string      `json:"app,omitempty"`
	AllowedBy *CheckRule  `json:"allowed_by,omitempty"`
	Rules     []CheckRule `json:"rules"`
}

// Explain turns a blocklist explanation into the /api/check answer; apps maps list names to the
// app they are filed under.
func Explain(e blocklist.Explanation, apps map[string]string) CheckResult {
	res := CheckResult{Name: e.Name, Blocked: e.Blocked, Rules: []CheckRule{}}
	rule := func(h blocklist.Hit) CheckRule {
		return CheckRule{List: h.List, App: apps[h.List], Category: h.Category, Kind: h.Kind.String(), Rule: h.Rule,
			Source: h.Origin, File: h.File, Line: h.Line}
	}
	for _, h := range e.Hits {
		r := rule(h)
		r.Decided = e.Decided != nil && h == *e.Decided
		res.Rules = append(res.Rules, r)
	}
	if e.Blocked {
		res.List, res.Rule, res.App = e.Decided.List, e.Decided.Rule, apps[e.Decided.List]
	}
	if e.Overridden != nil {
		r := rule(*e.Overridden)
		res.AllowedBy = &r
	}
	return res
}

// CheckRule is one matching rule in a CheckResult.
type CheckRule struct {
	List     string `json:"list"`
	App      string `json:"app,omitempty"`
	Category string `json:"category,omitempty"`
	Kind     string `json:"kind"`
	Rule     string `json:"rule"`
	Source   string `json:"source"` // the list's URL or path
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Decided  bool   `json:"decided,omitempty"`
}

// Reloaded is what one reload did, as POST /api/lists/reload reports it.
type Reloaded struct {
	// Config is "unchanged" (the lists were Reloaded), "reloaded" (a new config was applied) or
	// "built-in" (no config file: the lists were Reloaded).
	Config  string       `json:"config"`
	Lists   []ListStatus `json:"lists"`
	Entries int          `json:"entries"`
	// Failed names the lists that kept their last good entries, and why.
	Failed map[string]string `json:"failed,omitempty"`
}

type ListStatus struct {
	Name    string `json:"name"`
	Entries int    `json:"entries"`
	Invalid int    `json:"invalid_lines"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// ListsReloaded describes the lists after a reload.
func ListsReloaded(config string, r blocklist.Result) Reloaded {
	out := Reloaded{Config: config, Entries: r.Entries, Lists: []ListStatus{}}
	for _, l := range r.Lists {
		out.Lists = append(out.Lists, ListStatus{Name: l.Name, Entries: l.Entries, Invalid: l.Invalid})
	}
	for name, err := range r.Failed {
		if out.Failed == nil {
			out.Failed = map[string]string{}
		}
		out.Failed[name] = err.Error()
	}
	return out
}

// PProf serves Go's profiles (CPU, heap, goroutines, execution trace) under /debug/pprof/.
// net/http/pprof also registers them on http.DefaultServeMux when imported, which dnsfence never
// serves.
func PProf() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveCheckIP answers /api/check?ip=ADDR from the running egress table (learned sets included).
func serveCheckIP(w http.ResponseWriter, explain func(netip.Addr) (any, error), ip string) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		writeError(w, http.StatusBadRequest, "ip: want an IPv4 or IPv6 address, e.g. ?ip=203.0.113.7")
		return
	}
	if explain == nil {
		writeError(w, http.StatusNotFound, "egress is not enabled")
		return
	}
	v, err := explain(a)
	if err != nil {
		writeError(w, http.StatusNotFound, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ExplainIPs makes GET /api/check?ip=ADDR answer from explain (the running egress table);
// without it the API says egress is not enabled.
func (a *API) ExplainIPs(explain func(netip.Addr) (any, error)) { a.explainIP = explain }
