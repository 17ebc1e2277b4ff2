package outbox

import (
	"sync"
	"testing"
)

// TestOutbox: every datagram put is sent exactly once, in batches, by whichever goroutine leads,
// and buffers come back for reuse.
func TestOutbox(t *testing.T) {
	var o Outbox[[]byte]
	var mu sync.Mutex
	sent := map[byte]int{}
	batches := 0
	send := func(batch [][]byte) {
		mu.Lock()
		defer mu.Unlock()
		batches++
		for _, b := range batch {
			sent[b[0]]++
		}
	}
	var wg sync.WaitGroup
	spares := 0
	var smu sync.Mutex
	for i := range 200 {
		wg.Go(func() {
			spare, lead := o.Put([]byte{byte(i)})
			if spare != nil {
				smu.Lock()
				spares++
				smu.Unlock()
			}
			if lead {
				o.Flush(send, func(b []byte) []byte { return b }, 512)
			}
		})
	}
	wg.Wait()
	if len(sent) != 200 {
		t.Fatalf("%d distinct datagrams sent, want 200", len(sent))
	}
	for b, n := range sent {
		if n != 1 {
			t.Errorf("datagram %d sent %d times", b, n)
		}
	}
	if batches == 0 || batches > 200 {
		t.Errorf("%d batches", batches)
	}
	if spare, lead := o.Put([]byte{0}); spare == nil || !lead {
		t.Errorf("after the flushes: spare %v, lead %v; want a reused buffer and the lead", spare, lead)
	}
	t.Logf("%d batches, %d spare buffers handed out", batches, spares)
}
