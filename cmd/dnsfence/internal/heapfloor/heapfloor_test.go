package heapfloor

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestHeapFloor: with a floor, GOGC is raised while the live heap is small, so that the next
// collection comes at about the floor; it is 100 once the live heap is above half the floor;
// stop restores it.
func TestHeapFloor(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	const floorMB = 256 // far above this test binary's live heap
	stop := Start(floorMB)
	defer stop()
	runtime.GC()
	time.Sleep(20 * time.Millisecond) // the cleanup that updates GOGC runs after the cycle
	if p := gcPercent(); p <= 400 {
		t.Errorf("GOGC %d with a %d MiB floor and a small heap, want far above 100", p, floorMB)
	}
	live := make([]byte, 200<<20) // pointer-free, and more than half the floor
	deadline := time.Now().Add(10 * time.Second)
	for gcPercent() != 100 {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d after collections with %d MiB live, want 100", gcPercent(), len(live)>>20)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(live)
	debug.SetGCPercent(123) // what stop must restore, had it been set before start
	stop()
	if p := gcPercent(); p != 100 {
		t.Errorf("after stop: GOGC %d, want the 100 there was before start", p)
	}
	debug.SetGCPercent(100)
	// Collections after stop change nothing.
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if p := gcPercent(); p != 100 {
		t.Errorf("GOGC %d set again after stop", p)
	}
}

// TestHeapFloorEnvironmentWins: GOGC or GOMEMLIMIT in the environment leave the runtime alone.
func TestHeapFloorEnvironmentWins(t *testing.T) {
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv("GOGC", "")
			t.Setenv("GOMEMLIMIT", "")
			t.Setenv(env, "200")
			stop := Start(256)
			defer stop()
			runtime.GC()
			time.Sleep(20 * time.Millisecond)
			if p, l := gcPercent(), debug.SetMemoryLimit(-1); p != 100 || l != math.MaxInt64 {
				t.Errorf("%s set: GOGC %d, limit %d; want them untouched", env, p, l)
			}
		})
	}
}
