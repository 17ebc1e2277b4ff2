package admin

import (
	"net/http"
	"strconv"

	"github.com/dnsfence/dnsfence/resolver/report"
)

// Report serves the report: text by default, JSON with ?format=json; ?top=N clients.
func Report(rep *report.Report) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		top := 20
		if s := r.URL.Query().Get("top"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				http.Error(w, "top: want a positive number", http.StatusBadRequest)
				return
			}
			top = n
		}
		sum := rep.Summary(top)
		if r.URL.Query().Get("format") == "json" {
			w.Header().Set("Content-Type", "application/json")
			_ = sum.WriteJSON(w)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_ = sum.WriteText(w)
	})
}
