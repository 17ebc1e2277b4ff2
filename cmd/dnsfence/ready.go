package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// readyWindow is how far back /readyz looks for upstream answers.
const readyWindow = time.Minute

// upstreamLiveness remembers when an upstream last answered and when an exchange last failed,
// from every forwarder's Observe callback, for /readyz.
type upstreamLiveness struct {
	now            func() time.Time
	lastOK, lastKO atomic.Int64 // unix nanoseconds; 0: never
}

// stampEvery coarsens the timestamps: a busy forwarder then mostly reads them, rather than every
// exchange writing the same cache line.
const stampEvery = int64(100 * time.Millisecond)

// observe records one exchange; it fits resolver.Forward.Observe (beside the metrics).
func (u *upstreamLiveness) observe(err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away: says nothing about the upstream
	}
	t := u.now().UnixNano()
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
func (u *upstreamLiveness) check(window time.Duration) error {
	now := u.now()
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

// readyHandler serves /readyz: 200 when the blocklists are loaded and the upstreams pass
// upstreamLiveness.check; else 503 with the reasons.
func readyHandler(listsLoaded func() bool, up *upstreamLiveness, egress func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var reasons []string
		if !listsLoaded() {
			reasons = append(reasons, "blocklists not loaded")
		}
		if err := up.check(readyWindow); err != nil {
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
