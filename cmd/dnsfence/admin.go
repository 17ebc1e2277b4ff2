package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/blocklist"
)

// Admin API: JSON endpoints under /api/ on the HTTP listener (http.listen).
//
// Auth: with http.token (or http.token_file) set, every /api/ request (and /report) must carry
// "Authorization: Bearer TOKEN"; without one, /api/ is open, which config validation allows only
// on a loopback http.listen. /metrics, /healthz and /readyz are always open.

// admin serves /api/.
type admin struct {
	// tokenHash is the SHA-256 of the token; nil leaves /api/ open. Hashing first makes the
	// constant-time compare independent of the token's length too.
	tokenHash []byte
	stats     *stats
	pause     *pauser
	// reload runs one reload in the serve loop (the one SIGHUP and file changes use) and waits
	// for its result.
	reload func(ctx context.Context) (reloaded, error)
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

func newAdmin(token string, st *stats, p *pauser, reload func(context.Context) (reloaded, error), explain func(string) (any, error)) *admin {
	a := &admin{stats: st, pause: p, reload: reload, explain: explain}
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
func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
func (a *admin) requireToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			unauthorized(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *admin) authorized(r *http.Request) bool {
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

func (a *admin) serveStats(w http.ResponseWriter, r *http.Request) {
	top := 20
	if s := r.URL.Query().Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > topKCapacity {
			writeError(w, http.StatusBadRequest, "top: want a number from 1 to %d", topKCapacity)
			return
		}
		top = n
	}
	writeJSON(w, http.StatusOK, a.stats.report(top, a.blocking()))
}

func (a *admin) blocking() blockingState {
	paused, until := a.pause.state()
	if !paused {
		return blockingState{}
	}
	u := until.UTC()
	return blockingState{Paused: true, Until: &u}
}

func (a *admin) serveBlocking(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.blocking())
}

func (a *admin) servePause(w http.ResponseWriter, r *http.Request) {
	s := r.URL.Query().Get("for")
	if s == "" {
		writeError(w, http.StatusBadRequest, "for is required: how long to pause, e.g. ?for=5m (at most %s)", maxPause)
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > maxPause {
		writeError(w, http.StatusBadRequest, "for=%s: want a duration such as 30s, 5m or 1h, above 0 and at most %s", s, maxPause)
		return
	}
	a.pause.start(d, r.RemoteAddr)
	writeJSON(w, http.StatusOK, a.blocking())
}

func (a *admin) serveResume(w http.ResponseWriter, r *http.Request) {
	was := a.pause.resume(r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]bool{"paused": false, "was_paused": was})
}

// errShuttingDown answers a reload asked for while the server stops.
var errShuttingDown = errors.New("shutting down")

func (a *admin) serveReload(w http.ResponseWriter, r *http.Request) {
	res, err := a.reload(r.Context())
	switch {
	case errors.Is(err, errShuttingDown):
		writeError(w, http.StatusServiceUnavailable, "%v", err)
	case err != nil:
		writeError(w, http.StatusInternalServerError, "%v", err)
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

func (a *admin) serveCheck(w http.ResponseWriter, r *http.Request) {
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

// checkResult is the answer of /api/check: the verdict, the rule that decided (or the allow rule
// that overrode the block rules), and every matching rule with the file and line it is on.
type checkResult struct {
	Name      string      `json:"name"`
	Blocked   bool        `json:"blocked"`
	List      string      `json:"list,omitempty"`
	Rule      string      `json:"rule,omitempty"`
	App       string      `json:"app,omitempty"`
	AllowedBy *checkRule  `json:"allowed_by,omitempty"`
	Rules     []checkRule `json:"rules"`
}

type checkRule struct {
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

// explainLists answers /api/check from the running lists (every list: client groups do not apply).
func explainLists(cur func() *state) func(string) (any, error) {
	return func(name string) (any, error) {
		st := cur()
		apps := listApps(st.cfg)
		e := st.lists.Explain(name)
		res := checkResult{Name: e.Name, Blocked: e.Blocked, Rules: []checkRule{}}
		rule := func(h blocklist.Hit) checkRule {
			return checkRule{List: h.List, App: apps[h.List], Category: h.Category, Kind: h.Kind.String(), Rule: h.Rule,
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
		return res, nil
	}
}

// reloaded is what one reload did, as POST /api/lists/reload reports it.
type reloaded struct {
	// Config is "unchanged" (the lists were reloaded), "reloaded" (a new config was applied) or
	// "built-in" (no config file: the lists were reloaded).
	Config  string       `json:"config"`
	Lists   []listStatus `json:"lists"`
	Entries int          `json:"entries"`
	// Failed names the lists that kept their last good entries, and why.
	Failed map[string]string `json:"failed,omitempty"`
}

type listStatus struct {
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

// httpToken is the admin API token: http.token, or the first line of http.token_file.
func (c *Config) httpToken() (string, error) {
	if c.HTTP.TokenFile == "" {
		return c.HTTP.Token, nil
	}
	b, err := os.ReadFile(c.HTTP.TokenFile)
	if err != nil {
		return "", err
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("%s is empty", c.HTTP.TokenFile)
	}
	return tok, nil
}

// validateHTTP checks the token settings: an http.listen off loopback exposes the admin API,
// so it needs a token.
func (c *Config) validateHTTP() []error {
	var errs []error
	if c.HTTP.Token != "" && c.HTTP.TokenFile != "" {
		errs = append(errs, c.problem("http.token_file", "set http.token or http.token_file, not both"))
	}
	if strings.TrimSpace(c.HTTP.Token) != c.HTTP.Token || strings.ContainsAny(c.HTTP.Token, "\r\n") {
		errs = append(errs, c.problem("http.token", "must not have surrounding spaces or line breaks"))
	}
	tok, err := c.httpToken()
	if err != nil {
		errs = append(errs, c.problem("http.token_file", "%v", err))
	}
	if _, _, perr := net.SplitHostPort(c.HTTP.Listen); perr == nil && (c.HTTP.API || c.HTTP.PProf) && tok == "" && err == nil && !loopbackListen(c.HTTP.Listen) {
		what, off := "the admin API (/api/)", "http.api: false"
		switch {
		case c.HTTP.API && c.HTTP.PProf:
			what, off = "the admin API (/api/) and the profiler (/debug/pprof/)", "http.api: false and http.pprof: false"
		case c.HTTP.PProf:
			what, off = "the profiler (/debug/pprof/)", "http.pprof: false"
		}
		errs = append(errs, c.problem("http.listen", "%q is not a loopback address, so %s would be open "+
			"to the network: set http.token or http.token_file, or %s (or listen on 127.0.0.1 or [::1])", c.HTTP.Listen, what, off))
	}
	return errs
}

// loopbackListen reports whether host:port binds loopback only.
func loopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// reloadReply carries a reload's result from the serve loop to the admin API.
type reloadReply struct {
	res reloaded
	err error
}

// listsReloaded describes the lists after a reload.
func listsReloaded(config string, r blocklist.Result) reloaded {
	out := reloaded{Config: config, Entries: r.Entries, Lists: []listStatus{}}
	for _, l := range r.Lists {
		out.Lists = append(out.Lists, listStatus{Name: l.Name, Entries: l.Entries, Invalid: l.Invalid})
	}
	for name, err := range r.Failed {
		if out.Failed == nil {
			out.Failed = map[string]string{}
		}
		out.Failed[name] = err.Error()
	}
	return out
}

// pprofHandler serves Go's profiles (CPU, heap, goroutines, execution trace) under /debug/pprof/.
// net/http/pprof also registers them on http.DefaultServeMux when imported, which dnsfence never
// serves.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
