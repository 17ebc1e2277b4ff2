package resolver

import (
	"context"
	"time"
)

// NewQueryContext returns the Handler's query context and its cancel function.
func NewQueryContext(deadline time.Time) (context.Context, func()) {
	c := newQueryContext(deadline)
	return c, c.cancel
}

// QueryContextStarted says whether ctx, a Handler's query context, has started its timer.
func QueryContextStarted(ctx context.Context) bool { return ctx.(*queryContext).inner.Load() != nil }

// NewQueryContextIn is NewQueryContext cancelled with parent too (the cache's shared fetches).
func NewQueryContextIn(parent context.Context, deadline time.Time) (context.Context, func()) {
	c := newQueryContextIn(parent, deadline)
	return c, c.cancel
}
