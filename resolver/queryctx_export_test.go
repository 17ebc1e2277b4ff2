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
