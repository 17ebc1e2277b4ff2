package history

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is a history report: one entry per (client, app, list, outcome), merged over the
// instances that saw it.
type Summary struct {
	Since   time.Time `json:"since"`
	Entries []Entry   `json:"entries"`
}

// Entry is one device's attempts on one list.
type Entry struct {
	Client    string    `json:"client"`
	Name      string    `json:"name,omitempty"` // the device's name, when known
	App       string    `json:"app"`
	List      string    `json:"list"`
	Outcome   string    `json:"outcome"`
	Count     int64     `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Instances []string  `json:"instances"`
}

// Summarize merges query rows over instances; name, if set, names a client address.
func Summarize(since time.Time, rows []Row, name func(client string) string) Summary {
	type k struct{ client, app, list, outcome string }
	byKey := map[k]*Entry{}
	for _, r := range rows {
		key := k{r.Client, r.App, r.List, r.Outcome}
		e := byKey[key]
		if e == nil {
			e = &Entry{Client: r.Client, App: r.App, List: r.List, Outcome: r.Outcome, FirstSeen: r.FirstSeen}
			if name != nil && r.Client != "" {
				e.Name = name(r.Client)
			}
			byKey[key] = e
		}
		e.Count += r.Count
		if r.FirstSeen.Before(e.FirstSeen) {
			e.FirstSeen = r.FirstSeen
		}
		if r.LastSeen.After(e.LastSeen) {
			e.LastSeen = r.LastSeen
		}
		if !slices.Contains(e.Instances, r.Instance) {
			e.Instances = append(e.Instances, r.Instance)
		}
	}
	s := Summary{Since: since.UTC(), Entries: make([]Entry, 0, len(byKey))}
	for _, e := range byKey {
		slices.Sort(e.Instances)
		s.Entries = append(s.Entries, *e)
	}
	slices.SortFunc(s.Entries, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Client, b.Client), cmp.Compare(b.Count, a.Count), cmp.Compare(a.App, b.App),
			cmp.Compare(a.List, b.List), cmp.Compare(a.Outcome, b.Outcome))
	})
	return s
}

var columns = []string{"client", "name", "app", "list", "outcome", "count", "first_seen", "last_seen", "instances"}

func (e Entry) fields() []string {
	return []string{e.Client, e.Name, e.App, e.List, e.Outcome, strconv.FormatInt(e.Count, 10),
		e.FirstSeen.UTC().Format(time.RFC3339), e.LastSeen.UTC().Format(time.RFC3339), strings.Join(e.Instances, " ")}
}

// WriteText writes s as a table for a person.
func (s Summary) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "dnsfence history since %s: %d entries\n\n", s.Since.Format(time.RFC3339), len(s.Entries))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(columns, "\t")))
	for _, e := range s.Entries {
		f := e.fields()
		for i := range f {
			if f[i] == "" {
				f[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(f, "\t"))
	}
	return tw.Flush()
}

// WriteCSV writes s as CSV with a header line.
func (s Summary) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(columns)
	for _, e := range s.Entries {
		_ = cw.Write(e.fields())
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes s as JSON.
func (s Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// Report reads the rows matching f from s and summarises them since f.Since, naming clients
// with names.
func Report(ctx context.Context, s Store, f Filter, names func(client string) string) (Summary, error) {
	rows, err := s.Query(ctx, f)
	if err != nil {
		return Summary{}, fmt.Errorf("history: %w", err)
	}
	return Summarize(f.Since, rows, names), nil
}
