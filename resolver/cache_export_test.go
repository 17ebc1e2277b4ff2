package resolver

import "time"

// Test hooks: a test needs to know that its concurrent queries have all joined one flight
// before it lets the upstream answer.

// SetCacheJoinHook makes c call f whenever a miss joins a fetch already in flight.
func SetCacheJoinHook(c *Cache, f func()) { c.co.onJoin = f }

// CoalesceWithJoinHook is Coalesce, calling f whenever a query joins a flight.
func CoalesceWithJoinHook(timeout time.Duration, f func()) Middleware {
	co := newCoalescer(timeout, newBackground())
	co.onJoin = f
	return coalesce(co)
}

// WaitCacheIdle waits for c's background fetches (prefetches) to finish, without cancelling them
// as Close would. The caller must not start new ones meanwhile.
func WaitCacheIdle(c *Cache) { c.bg.wg.Wait() }
