package resolver

import (
	"sync/atomic"
	"time"
)

// Pause suspends blocking until a deadline: while it is active the block stage answers every
// list match normally, with Response.Allowed set to AllowedPaused. One Pause is shared by every
// chain a config reload builds, so a pause outlives reloads. The zero value is not paused. Safe
// for concurrent use; checking it is one atomic load while not paused.
type Pause struct {
	until atomic.Int64 // unix nanoseconds; 0 when not paused
}

// Set pauses blocking until the given time.
func (p *Pause) Set(until time.Time) { p.until.Store(until.UnixNano()) }

// Clear resumes blocking.
func (p *Pause) Clear() { p.until.Store(0) }

// Until returns when the pause ends, or the zero time if blocking is not paused at now.
func (p *Pause) Until(now time.Time) time.Time {
	u := p.until.Load()
	if u == 0 || now.UnixNano() >= u {
		return time.Time{}
	}
	return time.Unix(0, u)
}

// Active reports whether blocking is paused at now.
func (p *Pause) Active(now time.Time) bool { return !p.Until(now).IsZero() }

// active is Active for the hot path: the clock is read only while a pause is set.
func (p *Pause) active(now func() time.Time) bool {
	u := p.until.Load()
	return u != 0 && now().UnixNano() < u
}
