// Package outbox batches datagrams that many goroutines send on one socket, for the UDP listener's
// replies and the upstream sockets' queries.
package outbox

import (
	"runtime"
	"sync"
)

// Outbox collects datagrams so that they leave in batches: the goroutine that puts one into an
// empty outbox yields once, letting the goroutines already runnable put theirs, then sends them
// all (Flush). Besides the system calls, a batch saves wakeups: a send wakes the receiver, and the
// rest of a batch finds it awake.
//
// A datagram's buffer belongs to the outbox once it is put; the caller gets a spare one in
// exchange, so that a buffer is never written while it waits to be sent.
type Outbox[T any] struct {
	mu       sync.Mutex
	queue    []T
	flushing bool // a goroutine is sending; it takes whatever is put meanwhile
	spare    []T  // the other queue, swapped with queue on each flush
	free     [][]byte
}

// Put queues v and returns a spare buffer for the caller's next datagram (nil if none is free),
// and whether the caller must now call Flush (no other goroutine is flushing).
func (o *Outbox[T]) Put(v T) (spare []byte, lead bool) {
	o.mu.Lock()
	o.queue = append(o.queue, v)
	if n := len(o.free); n > 0 {
		spare = o.free[n-1][:0]
		o.free[n-1] = nil
		o.free = o.free[:n-1]
	}
	lead = !o.flushing
	o.flushing = true
	o.mu.Unlock()
	return spare, lead
}

// Flush yields once, then hands what is queued to send until the outbox is empty. send must be
// done with the batch when it returns; the buffers that buf returns for its items are then kept
// for Put to hand out, unless larger than keep bytes.
func (o *Outbox[T]) Flush(send func(batch []T), buf func(T) []byte, keep int) {
	runtime.Gosched() // let the goroutines already runnable put theirs too
	o.Send(send, buf, keep)
}

// Send is Flush without the yield, for a caller that has put a batch of its own: a yield also
// wakes an idle P's thread to look for work (the runtime's wakep), a futex call each time.
func (o *Outbox[T]) Send(send func(batch []T), buf func(T) []byte, keep int) {
	for {
		o.mu.Lock()
		batch := o.queue
		if len(batch) == 0 {
			o.flushing = false
			o.mu.Unlock()
			return
		}
		o.queue, o.spare = o.spare[:0], nil
		o.mu.Unlock()
		send(batch)
		o.mu.Lock()
		var zero T
		for i := range batch {
			if b := buf(batch[i]); cap(b) <= keep {
				o.free = append(o.free, b[:0])
			}
			batch[i] = zero
		}
		o.spare = batch[:0]
		o.mu.Unlock()
	}
}
