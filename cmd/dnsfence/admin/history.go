package admin

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/dnsfence/dnsfence/resolver/history"
)

// History serves the history from the running store: /api/history (JSON, ?format=csv or
// text) and /report?since=… (text, ?format=json or csv); without since, /report is the in-memory
// report since start (next). names gives the device names for each answer (history.DeviceNames:
// read per request, so they follow the leases file and reloads). rec nil: history is off.
func History(rec *history.Recorder, names func() func(string) string, next http.Handler, defaultFormat string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		qv := r.URL.Query()
		if next != nil && !qv.Has("since") {
			next.ServeHTTP(w, r)
			return
		}
		if rec == nil {
			http.Error(w, "history is off (history.enabled: false)", http.StatusNotFound)
			return
		}
		since := 24 * time.Hour
		if s := qv.Get("since"); s != "" {
			d, err := history.ParseAge(s)
			if err != nil {
				http.Error(w, "since: "+err.Error(), http.StatusBadRequest)
				return
			}
			since = d
		}
		// Write what is aggregated so far, so the answer includes the last seconds.
		fctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		ferr := rec.Flush(fctx)
		cancel()
		s := rec.Store()
		if s == nil {
			http.Error(w, fmt.Sprintf("history store not available: %v", ferr), http.StatusServiceUnavailable)
			return
		}
		sum, err := history.Report(r.Context(), s, history.Filter{Since: time.Now().Add(-since), App: qv.Get("app"), Client: qv.Get("client")}, names())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		format := qv.Get("format")
		if format == "" {
			format = defaultFormat
		}
		switch format {
		case "json":
			w.Header().Set("Content-Type", "application/json")
			_ = sum.WriteJSON(w)
		case "csv":
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			_ = sum.WriteCSV(w)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_ = sum.WriteText(w)
		}
	})
}
