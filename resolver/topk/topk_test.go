package topk_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/dnsfence/dnsfence/resolver/topk"
)

// TestExactWhileUnderCapacity: with no more distinct keys than counters nothing is evicted, so
// every count is exact and no error is reported.
func TestExactWhileUnderCapacity(t *testing.T) {
	c := topk.New[string](4)
	for i, k := range []string{"a", "b", "c", "d"} {
		for range (i + 1) * 10 {
			c.Add(k)
		}
	}
	got := c.Top(10)
	want := []topk.Item[string]{{"d", 40, 0}, {"c", 30, 0}, {"b", 20, 0}, {"a", 10, 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Top = %v, want %v", got, want)
	}
	if top2 := c.Top(2); len(top2) != 2 || top2[0].Key != "d" || top2[1].Key != "c" {
		t.Errorf("Top(2) = %v", top2)
	}
	if len(c.Top(0)) != 0 || len(c.Top(-1)) != 0 {
		t.Error("Top(n <= 0) returned items")
	}
	if c.Total() != 100 {
		t.Errorf("Total = %d, want 100", c.Total())
	}
}

// TestGuarantees checks the space-saving bounds on skewed streams far larger than the counter:
// bounded size, Count-Error <= true <= Count, Error <= N/capacity, every key more frequent than
// N/capacity tracked, and counts summing to N.
func TestGuarantees(t *testing.T) {
	for _, tc := range []struct {
		capacity, keys, n int
		skew              float64
	}{
		{capacity: 16, keys: 1000, n: 50_000, skew: 1.1},
		{capacity: 64, keys: 10_000, n: 200_000, skew: 1.3},
		{capacity: 8, keys: 50, n: 20_000, skew: 2},
	} {
		t.Run(fmt.Sprintf("k%d-keys%d", tc.capacity, tc.keys), func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tc.capacity)))
			zipf := rand.NewZipf(r, tc.skew, 1, uint64(tc.keys-1))
			c := topk.New[uint64](tc.capacity)
			truth := map[uint64]uint64{}
			for range tc.n {
				k := zipf.Uint64()
				truth[k]++
				c.Add(k)
			}
			items := c.Top(tc.capacity + 10)
			if len(items) > tc.capacity {
				t.Fatalf("%d items tracked, capacity %d", len(items), tc.capacity)
			}
			bound := uint64(tc.n / tc.capacity)
			var sum uint64
			tracked := map[uint64]bool{}
			for i, it := range items {
				sum += it.Count
				tracked[it.Key] = true
				if tr := truth[it.Key]; it.Count-it.Error > tr || tr > it.Count {
					t.Errorf("%d: true count %d outside [%d, %d]", it.Key, tr, it.Count-it.Error, it.Count)
				}
				if it.Error > bound {
					t.Errorf("%d: error %d > N/k = %d", it.Key, it.Error, bound)
				}
				if i > 0 && items[i-1].Count < it.Count {
					t.Errorf("not sorted at %d: %v", i, items[i-1:i+1])
				}
			}
			if sum != uint64(tc.n) {
				t.Errorf("counts sum to %d, want N = %d", sum, tc.n)
			}
			for k, n := range truth {
				if n > bound && !tracked[k] {
					t.Errorf("key %d seen %d times (> N/k = %d) is not tracked", k, n, bound)
				}
			}
			// On a skewed stream the true heavy hitters come out on top.
			if items[0].Key != 0 {
				t.Errorf("top key %d, want 0 (the most frequent)", items[0].Key)
			}
		})
	}
}

// TestConcurrentAdds: adds from many goroutines are all counted (run with -race).
func TestConcurrentAdds(t *testing.T) {
	c := topk.New[string](8)
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				c.Add(fmt.Sprintf("k%d", (w+i)%4))
				if i%500 == 0 {
					c.Top(3)
				}
			}
		}()
	}
	wg.Wait()
	items := c.Top(8)
	if len(items) != 4 {
		t.Fatalf("tracked %v, want 4 keys", items)
	}
	for _, it := range items {
		if it.Count != workers*each/4 || it.Error != 0 {
			t.Errorf("%s: count %d error %d, want %d exact", it.Key, it.Count, it.Error, workers*each/4)
		}
	}
	if c.Total() != workers*each {
		t.Errorf("Total %d, want %d", c.Total(), workers*each)
	}
}

func TestNewPanicsOnZeroCapacity(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New(0) did not panic")
		}
	}()
	topk.New[string](0)
}

// TestAddDoesNotAllocate: once full, counting (hits and evictions) allocates nothing.
func TestAddDoesNotAllocate(t *testing.T) {
	c := topk.New[string](16)
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("name%d.example.", i)
		c.Add(keys[i])
	}
	i := 0
	if a := testing.AllocsPerRun(1000, func() { c.Add(keys[i%len(keys)]); i++ }); a != 0 {
		t.Errorf("Add allocates %v times", a)
	}
}

func BenchmarkAdd(b *testing.B) {
	c := topk.New[string](256)
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("name%d.example.", i)
	}
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.2, 1, uint64(len(keys)-1))
	idx := make([]uint64, 1<<16)
	for i := range idx {
		idx[i] = zipf.Uint64()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c.Add(keys[idx[i&(len(idx)-1)]])
	}
}
