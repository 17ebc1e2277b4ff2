package admin

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestUpstreamLiveness: the readiness rule over time, with an injected clock.
func TestUpstreamLiveness(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	u := &Liveness{Now: func() time.Time { return now }}
	step := func(d time.Duration) { now = now.Add(d) }
	if err := u.Check(time.Minute); err != nil {
		t.Errorf("no exchange yet: %v", err)
	}
	u.Observe(errors.New("timeout"))
	if err := u.Check(time.Minute); err == nil || !strings.Contains(err.Error(), "last answer: never") {
		t.Errorf("only a failure: %v", err)
	}
	u.Observe(context.Canceled) // a client that went away says nothing about upstreams
	step(time.Second)
	u.Observe(nil)
	if err := u.Check(time.Minute); err != nil {
		t.Errorf("an answer after the failure: %v", err)
	}
	step(30 * time.Second)
	u.Observe(errors.New("timeout"))
	if err := u.Check(time.Minute); err != nil {
		t.Errorf("an answer 30s ago, a failure now: %v", err)
	}
	step(31 * time.Second)
	if err := u.Check(time.Minute); err == nil || !strings.Contains(err.Error(), "last answer: 1m1s ago") {
		t.Errorf("the answer left the window, the failure did not: %v", err)
	}
	step(30 * time.Second)
	if err := u.Check(time.Minute); err != nil {
		t.Errorf("no exchange in the window: %v", err)
	}
}
