package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// ReadyWindow is how far back /readyz looks for upstream answers.
const ReadyWindow = time.Minute

// Liveness remembers when an upstream last answered and when an exchange last failed,
// from every forwarder's Observe callback, for /readyz.
type Liveness struct {
	Now            func() time.Time
	lastOK, lastKO atomic.Int64 // unix nanoseconds; 0: never
}

// stampEvery coarsens the timestamps: a busy forwarder then mostly reads them, rather than every
// exchange writing the same cache line.
const stampEvery = int64(100 * time.Millisecond)

// observe records one exchange; it fits upstream.Forward.Observe (beside the metrics).
func (u *Liveness) Observe(err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away: says nothing about the upstream
	}
	t := u.Now().UnixNano()
	stamp := &u.lastOK
	if err != nil {
		stamp = &u.lastKO
	}
	if t-stamp.Load() >= stampEvery {
		stamp.Store(t)
	}
}

// check is the upstream half of readiness: ready when an upstream answered within window, or
// when no exchange was attempted within it (a fresh or idle instance; failures older than the
// window are forgotten). Not ready: exchanges failed within the window and none succeeded.
func (u *Liveness) Check(window time.Duration) error {
	now := u.Now()
	since := now.Add(-window).UnixNano()
	if u.lastOK.Load() > since {
		return nil
	}
	ko := u.lastKO.Load()
	if ko <= since {
		return nil
	}
	last := "never"
	if ok := u.lastOK.Load(); ok != 0 {
		last = now.Sub(time.Unix(0, ok)).Round(time.Second).String() + " ago"
	}
	return fmt.Errorf("no upstream answered in the last %s (exchanges failed, the latest %s ago; last answer: %s)",
		window, now.Sub(time.Unix(0, ko)).Round(time.Millisecond), last)
}

// Ready serves /readyz: 200 when the blocklists are loaded, the upstreams pass Liveness.Check and
// egress (if set) reports no error; else 503 with the reasons.
func Ready(listsLoaded func() bool, up *Liveness, egress func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var reasons []string
		if !listsLoaded() {
			reasons = append(reasons, "blocklists not loaded")
		}
		if err := up.Check(ReadyWindow); err != nil {
			reasons = append(reasons, err.Error())
		}
		if err := egress(); err != nil {
			reasons = append(reasons, err.Error())
		}
		if len(reasons) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reasons": reasons})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
	})
}
