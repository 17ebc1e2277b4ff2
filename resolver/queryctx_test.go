package resolver_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
)

func TestQueryContextCancel(t *testing.T) {
	deadline := time.Now().Add(time.Hour)
	ctx, cancel := resolver.NewQueryContext(deadline)
	if d, ok := ctx.Deadline(); !ok || !d.Equal(deadline) {
		t.Errorf("Deadline() = %v, %v", d, ok)
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("Err() = %v before cancel", err)
	}
	child, stop := context.WithTimeout(ctx, 2*time.Hour)
	defer stop()
	cancel()
	<-ctx.Done()
	<-child.Done() // a derived context ends with it
	if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) {
		t.Errorf("after cancel: Err() = %v, child %v", ctx.Err(), child.Err())
	}
}

func TestQueryContextCanceledBeforeDone(t *testing.T) {
	ctx, cancel := resolver.NewQueryContext(time.Now().Add(time.Hour))
	cancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err() = %v", ctx.Err())
	}
	<-ctx.Done() // started after cancel: already closed
}

func TestQueryContextDeadline(t *testing.T) {
	ctx, cancel := resolver.NewQueryContext(time.Now().Add(20 * time.Millisecond))
	defer cancel()
	child, stop := context.WithCancel(ctx)
	defer stop()
	<-ctx.Done()
	<-child.Done()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Errorf("Err() = %v, child %v", ctx.Err(), child.Err())
	}
	expired, cancel2 := resolver.NewQueryContext(time.Now().Add(-time.Second))
	defer cancel2()
	if !errors.Is(expired.Err(), context.DeadlineExceeded) {
		t.Errorf("past deadline, before Done: Err() = %v", expired.Err())
	}
}

func TestQueryContextConcurrent(t *testing.T) {
	for range 100 {
		ctx, cancel := resolver.NewQueryContext(time.Now().Add(time.Hour))
		var wg sync.WaitGroup
		wg.Go(func() { <-ctx.Done() })
		wg.Go(func() { _ = ctx.Err() })
		wg.Go(cancel)
		wg.Wait()
		if ctx.Err() == nil {
			t.Fatal("not canceled")
		}
	}
}

// TestHandlerStartsNoTimerForLocalAnswers: a query answered without waiting never starts its
// context's timer; one that waits does.
func TestHandlerStartsNoTimerForLocalAnswers(t *testing.T) {
	for _, wait := range []bool{false, true} {
		var started bool
		h := &resolver.Handler{Resolver: resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
			if wait {
				select {
				case <-ctx.Done():
				default:
				}
			}
			started = resolver.QueryContextStarted(ctx)
			return &resolver.Response{Msg: new(dns.Msg).SetReply(req.Msg)}, nil
		})}
		h.ServeDNS(&recorder{udp: true}, new(dns.Msg).SetQuestion("x.example.", dns.TypeA))
		if started != wait {
			t.Errorf("waiting %v: timer started %v", wait, started)
		}
	}
}

// TestQueryContextParent: a shared fetch's context ends when the cache's does (Close), whether
// or not it has started its timer, and starts none until asked for Done.
func TestQueryContextParent(t *testing.T) {
	for _, started := range []bool{false, true} {
		parent, cancelParent := context.WithCancel(context.Background())
		ctx, cancel := resolver.NewQueryContextIn(parent, time.Now().Add(time.Hour))
		if started {
			_ = ctx.Done()
		} else if resolver.QueryContextStarted(ctx) {
			t.Fatal("timer started before anyone asked for Done")
		}
		if err := ctx.Err(); err != nil {
			t.Fatalf("Err before the parent ended: %v", err)
		}
		cancelParent()
		if err := ctx.Err(); !errors.Is(err, context.Canceled) {
			t.Errorf("started=%v: Err after the parent ended = %v, want Canceled", started, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("started=%v: Done not closed after the parent ended", started)
		}
		cancel()
	}
}
