package blocklist

import "time"

// pacer makes a build that runs while queries are answered (a reload) give way to them every
// paceEvery of work. With one P (GOMAXPROCS=1, a single-core router) the build otherwise keeps
// it until the runtime preempts it, 10-20 ms at a time, and the queries that arrive meanwhile
// wait, as does the network poller that would hand them over.
//
// It sleeps for paceSleep, long enough for the P to run out of other work and poll the network.
// Neither Gosched nor a 1 us sleep does that: the yielded goroutine is back on a run queue at
// once (a woken timer's goroutine even runs next), the scheduler polls the network only when its
// queues are empty, and with one core dnsperf saw p99 235 ms during reloads against 9 ms with
// the 1 ms sleep. The sleeps cost a reload wall time (14% on one core, 1.3-2x on two busy ones),
// not CPU.
//
// A nil *pacer never yields (the first load, which nothing waits on).
type pacer struct {
	every  time.Duration // paceEvery; tests set 0 to yield at every check
	sleep  time.Duration // paceSleep
	n      int
	last   time.Time
	yields int // for tests
}

const (
	paceEvery = 4 * time.Millisecond // longest stretch of build work between yields, give or take a sort
	paceSleep = time.Millisecond     // long enough for the P to run out of work and poll the network
	paceCheck = 1024                 // ticks between clock reads
)

func newPacer() *pacer { return &pacer{every: paceEvery, sleep: paceSleep, last: time.Now()} }

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
	time.Sleep(p.sleep)
	p.last = time.Now()
	p.yields++
}
