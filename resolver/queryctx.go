package resolver

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// queryContext is the context the Handler gives a query: a deadline, and cancellation once the
// reply is written. context.WithTimeout would start a timer for every query, which costs clock
// reads (~0.3 us each on the VMs we measured), timer-heap work in the runtime and four
// allocations; but only a query that waits (on an upstream, on another query's exchange) ever
// asks for Done. So the timer, inside an ordinary context.WithDeadline, starts on the first call
// to Done: blocked and cached answers, most of the traffic, never start one.
//
// Contexts derived from it attach to that inner context directly (Value passes the context
// package's lookup through), so deriving one does not start a goroutine.
type queryContext struct {
	// parent is context.Background for a query; the cache's context for its shared fetches, so
	// that closing the cache cancels them.
	parent   context.Context
	deadline time.Time
	inner    atomic.Pointer[innerContext] // set once, by start
	canceled atomic.Bool
	mu       sync.Mutex // orders start and cancel
	// waiter, if set, is told when the query is about to wait (see WillWait).
	waiter Waiter
}

type innerContext struct {
	ctx    context.Context
	cancel context.CancelFunc
}

var _ context.Context = (*queryContext)(nil)

func newQueryContext(deadline time.Time) *queryContext {
	return &queryContext{parent: context.Background(), deadline: deadline}
}

// newQueryContextIn is newQueryContext cancelled with parent too. It is the shared fetches'
// context.WithTimeout: that one registered every fetch with the cache's context, whose lock all
// misses share, and started a timer nobody waits on when the upstream takes the deadline itself.
func newQueryContextIn(parent context.Context, deadline time.Time) *queryContext {
	return &queryContext{parent: parent, deadline: deadline}
}

// Deadline implements context.Context.
func (c *queryContext) Deadline() (time.Time, bool) { return c.deadline, true }

// Done implements context.Context; the first call starts the timer.
func (c *queryContext) Done() <-chan struct{} { return c.start().Done() }

// Err implements context.Context without starting the timer.
func (c *queryContext) Err() error {
	if in := c.inner.Load(); in != nil {
		return in.ctx.Err()
	}
	if c.canceled.Load() {
		return context.Canceled
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context. Its one value of its own is the Waiter (WillWait); the
// inner context answers the context package's own lookups, once Done has been asked (which that
// package does first).
func (c *queryContext) Value(key any) any {
	if _, ok := key.(waiterKey); ok {
		return c.waiter
	}
	if in := c.inner.Load(); in != nil {
		return in.ctx.Value(key)
	}
	return nil
}

func (c *queryContext) start() context.Context {
	if in := c.inner.Load(); in != nil {
		return in.ctx
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if in := c.inner.Load(); in != nil {
		return in.ctx
	}
	ctx, cancel := context.WithDeadline(c.parent, c.deadline)
	if c.canceled.Load() {
		cancel()
	}
	c.inner.Store(&innerContext{ctx, cancel})
	return ctx
}

// cancel ends the query's context, as the cancel function of context.WithTimeout would.
func (c *queryContext) cancel() {
	c.mu.Lock()
	c.canceled.Store(true)
	in := c.inner.Load()
	c.mu.Unlock()
	if in != nil {
		in.cancel()
	}
}

// A Waiter is told that the query is about to wait for another server or another query's
// exchange; it may be told more than once per query (the cache, then the router), and only the
// first call matters. The UDP listener's reading goroutine answers blocked and cached
// names itself, and on that call it hands the reading to another goroutine first, so that the
// socket is not left unread while this query waits.
type Waiter interface {
	WillWait()
}

type waiterKey struct{}

// WillWait tells the Waiter of the query of ctx (if its writer is one) that the query is about to
// wait. The stages that may wait call it first: the cache on a miss, the router.
func WillWait(ctx context.Context) {
	if w, _ := ctx.Value(waiterKey{}).(Waiter); w != nil {
		w.WillWait()
	}
}
