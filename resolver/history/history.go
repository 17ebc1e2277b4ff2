// Package history keeps which client tried to reach which app's lists, and when, across restarts:
// blocked and would-have-blocked queries (log-only, exemption, paused) aggregated per time bucket,
// client, app, list and outcome, written in batches to a Store (an embedded SQLite file, or
// PostgreSQL shared by several instances) and pruned by age.
//
// It must never slow or break DNS: the query path only makes a non-blocking channel send; the
// aggregation, the writes and the pruning run in the background, and when the store is slow or
// down events past a bounded buffer are counted as dropped instead of waiting. It must not put
// client addresses or device names into metric labels.
package history

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Outcome is what happened to a recorded attempt.
type Outcome uint8

// Outcomes.
const (
	Blocked Outcome = iota
	// LogOnly: a log-only group let it through (it would have been blocked).
	LogOnly
	// Exempt: an exemption let it through.
	Exempt
	// Paused: blocking was paused.
	Paused
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"blocked", "log-only", "exempt", "paused"}

func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// ParseOutcome is the inverse of Outcome.String.
func ParseOutcome(s string) (Outcome, error) {
	for i, n := range outcomeNames {
		if n == s {
			return Outcome(i), nil
		}
	}
	return 0, fmt.Errorf("outcome %q: want blocked, log-only, exempt or paused", s)
}

// Row is one aggregate: Count attempts in the bucket starting at Bucket, first and last seen.
// In query results (Store.Query) rows are summed over the buckets and Bucket is zero.
type Row struct {
	Bucket    time.Time
	Instance  string
	Client    string // "" when the client is omitted (privacy omit)
	App       string // "" for a list without an app
	List      string
	Outcome   string
	Count     int64
	FirstSeen time.Time
	LastSeen  time.Time
}

// Filter selects rows for a report.
type Filter struct {
	Since  time.Time // rows whose bucket ends after Since
	App    string    // "" for all
	Client string    // "" for all
}

// Store persists rows. Implementations are safe for concurrent use.
type Store interface {
	// Write adds rows, merging with rows of the same key (counts added, first/last seen widened).
	Write(ctx context.Context, rows []Row) error
	// Prune deletes the rows of buckets that started before before; it returns how many.
	Prune(ctx context.Context, before time.Time) (int64, error)
	// Query returns the rows matching f, summed over buckets per (instance, client, app, list,
	// outcome).
	Query(ctx context.Context, f Filter) ([]Row, error)
	// Ping checks that the store is reachable.
	Ping(ctx context.Context) error
	Close() error
}

// ErrNewerSchema is returned when the database was written by a newer dnsfence.
var ErrNewerSchema = errors.New("history database has a newer schema than this dnsfence knows")

// ParseAge parses an age such as 90d, 2w, 36h or 15m (Go durations plus d and w).
func ParseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("%q: want e.g. 90d, 2w, 36h", s)
			}
			return time.Duration(v * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want e.g. 90d, 2w, 36h", s)
	}
	return d, nil
}
