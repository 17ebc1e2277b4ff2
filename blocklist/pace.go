package blocklist

import "time"

// pacer makes a build that runs while queries are answered (a reload) give way to them every
// paceEvery of work. With one P (GOMAXPROCS=1, a single-core router) the build otherwise keeps
// it until the runtime preempts it, 10-20 ms at a time, and the queries that arrive meanwhile
// wait, as does the network poller that would hand them over. A sleep rather than Gosched: a
// yielded goroutine goes to the global run queue, which the scheduler checks before the network,
// so it would run again at once; a sleeping one lets the scheduler poll the network. When nothing
// else wants the P, the sleep costs at most the poller's 1 ms timeout.
//
// A nil *pacer never yields (the first load, which nothing waits on).
type pacer struct {
	every  time.Duration // paceEvery; tests set 0 to yield at every check
	n      int
	last   time.Time
	yields int // for tests
}

const (
	paceEvery = 4 * time.Millisecond // longest stretch of build work between yields, give or take a sort
	paceCheck = 1024                 // ticks between clock reads
)

func newPacer() *pacer { return &pacer{every: paceEvery, last: time.Now()} }

// tick counts a small unit of work (a rule, a key) and yields if paceEvery has passed.
func (p *pacer) tick() {
	if p == nil {
		return
	}
	if p.n++; p.n%paceCheck == 0 {
		p.check()
	}
}

// check yields if paceEvery has passed since the last yield; for larger units of work (a buffer
// hashed).
func (p *pacer) check() {
	if p == nil || time.Since(p.last) < p.every {
		return
	}
	time.Sleep(time.Microsecond)
	p.last = time.Now()
	p.yields++
}
