// Package topk finds the most frequent keys of an unbounded stream in bounded memory, with the
// space-saving algorithm (Metwally, Agrawal and El Abbadi, "Efficient Computation of Frequent and
// Top-k Elements in Data Streams", ICDT 2005).
package topk

import (
	"cmp"
	"slices"
	"sync"
)

// Counter counts a stream of keys in at most capacity counters. When a key that is not tracked
// arrives and every counter is taken, it replaces the key with the smallest count and inherits
// that count (plus one) as its possible overestimate. So, after N adds:
//   - a tracked key's true frequency lies in [Count-Error, Count], and Error <= N/capacity;
//   - every key whose true frequency exceeds N/capacity is tracked;
//   - with at most capacity distinct keys, every count is exact.
//
// Safe for concurrent use. Add takes one mutex for O(log capacity) work and, once every counter
// is taken, allocates nothing.
type Counter[K comparable] struct {
	mu       sync.Mutex
	capacity int
	index    map[K]*entry[K]
	heap     []*entry[K] // min-heap on count: heap[0] is the key to evict
	total    uint64
}

type entry[K comparable] struct {
	key        K
	count, err uint64
	pos        int // index in heap
}

// Item is one tracked key: its true frequency is between Count-Error and Count.
type Item[K comparable] struct {
	Key   K
	Count uint64
	Error uint64
}

// New returns a Counter with capacity counters. More counters mean smaller errors: Error is at
// most (adds so far)/capacity. New panics if capacity < 1.
func New[K comparable](capacity int) *Counter[K] {
	if capacity < 1 {
		panic("topk: capacity must be at least 1")
	}
	return &Counter[K]{capacity: capacity, index: make(map[K]*entry[K], capacity), heap: make([]*entry[K], 0, capacity)}
}

// Add counts one occurrence of key.
func (c *Counter[K]) Add(key K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	if e, ok := c.index[key]; ok {
		e.count++
		c.down(e.pos)
		return
	}
	if len(c.heap) < c.capacity {
		e := &entry[K]{key: key, count: 1, pos: len(c.heap)}
		c.heap = append(c.heap, e)
		c.index[key] = e
		c.up(e.pos)
		return
	}
	// Evict the minimum: the newcomer may have occurred up to min times unseen.
	e := c.heap[0]
	delete(c.index, e.key)
	e.key, e.err = key, e.count
	e.count++
	c.index[key] = e
	c.down(0)
}

// Total is the number of adds so far.
func (c *Counter[K]) Total() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Top returns up to n tracked keys, highest count first (ties: smaller error first).
func (c *Counter[K]) Top(n int) []Item[K] {
	c.mu.Lock()
	items := make([]Item[K], len(c.heap))
	for i, e := range c.heap {
		items[i] = Item[K]{Key: e.key, Count: e.count, Error: e.err}
	}
	c.mu.Unlock()
	slices.SortFunc(items, func(a, b Item[K]) int {
		if r := cmp.Compare(b.Count, a.Count); r != 0 {
			return r
		}
		return cmp.Compare(a.Error, b.Error)
	})
	if n < len(items) {
		items = items[:max(n, 0)]
	}
	return items
}

func (c *Counter[K]) less(i, j int) bool { return c.heap[i].count < c.heap[j].count }

func (c *Counter[K]) swap(i, j int) {
	c.heap[i], c.heap[j] = c.heap[j], c.heap[i]
	c.heap[i].pos, c.heap[j].pos = i, j
}

func (c *Counter[K]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !c.less(i, p) {
			return
		}
		c.swap(i, p)
		i = p
	}
}

func (c *Counter[K]) down(i int) {
	n := len(c.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && c.less(r, l) {
			m = r
		}
		if !c.less(m, i) {
			return
		}
		c.swap(i, m)
		i = m
	}
}
