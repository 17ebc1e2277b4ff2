package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type running struct {
	*instance
	log    *syncBuffer
	reload chan chan struct{}
	// stop stops dnsfence and returns what it exited with; later calls return the same.
	stop func() error
}

// start runs dnsfence in-process with args (plus listen/http on random loopback ports unless given)
// and stops it when the test ends, failing the test if it did not exit cleanly. Its list reloads
// are built in process (hooks.inProcessLists); startWithChild builds them as the program does.
func start(t *testing.T, args ...string) *running {
	t.Helper()
	return startHooks(t, hooks{inProcessLists: true}, args...)
}

// startWithChild is start with list reloads built by the index child (this test binary, see
// TestMain), as the program builds them.
func startWithChild(t *testing.T, args ...string) *running {
	t.Helper()
	return startHooks(t, hooks{}, args...)
}

func startHooks(t *testing.T, h hooks, args ...string) *running {
	t.Helper()
	joined := strings.Join(args, " ")
	if !strings.Contains(joined, "-listen") && !strings.Contains(joined, "-config") {
		args = append(args, "-listen", "127.0.0.1:0")
	}
	if !strings.Contains(joined, "-http") {
		args = append(args, "-http", "127.0.0.1:0")
	}
	r := &running{log: &syncBuffer{}, reload: make(chan chan struct{})}
	ready := make(chan *instance, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		h.ready, h.reload = func(i *instance) { ready <- i }, r.reload
		done <- runWith(ctx, args, io.Discard, r.log, h)
	}()
	select {
	case r.instance = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("dnsfence exited at start: %v\n%s", err, r.log)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("dnsfence did not start\n%s", r.log)
	}
	var once sync.Once
	var exitErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case exitErr = <-done:
			case <-time.After(10 * time.Second):
				exitErr = errors.New("dnsfence did not stop")
			}
		})
		return exitErr
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("dnsfence exited with %v", err)
		}
	})
	return r
}

// triggerReload asks the instance to reload its lists and waits for the result.
func (r *running) triggerReload(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	r.reload <- done
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reload did not finish")
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// scrape fetches /metrics and parses it.
func scrape(t *testing.T, httpAddr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// value returns the counter/gauge value (or histogram sample count) of the series of family name
// whose labels include all of labels ("k=v" pairs); -1 if there is none.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf, ok := mfs[name]
	if !ok {
		return -1
	}
	var sum float64
	found := false
next:
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if have[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	if !found {
		return -1
	}
	return sum
}

func removeFile(p string) error { return os.Remove(p) }

// rcoder returns a function that asks the server at addr for a name's A record over UDP and
// returns the answer's rcode.
func rcoder(t *testing.T, addr string) func(name string) int {
	return func(name string) int {
		return resolvertest.Exchange(t, "udp", addr, resolvertest.Query(name, dns.TypeA, false)).Rcode
	}
}
