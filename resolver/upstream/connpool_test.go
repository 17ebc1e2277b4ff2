package upstream_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/listen"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

// portRecorder is an upstream that answers A queries and records each query's source port and ID.
type portRecorder struct {
	mu    sync.Mutex
	ports map[string]int // "udp:port" or "tcp:port" -> queries
	ids   map[uint16]int
	drop  func(name string) bool // queries it never answers; set before it starts
}

func startRecorder(t *testing.T, opts listen.Options, drop func(name string) bool) (*portRecorder, string) {
	t.Helper()
	pr := &portRecorder{ports: map[string]int{}, ids: map[uint16]int{}, drop: drop}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		pr.mu.Lock()
		_, port, _ := net.SplitHostPort(w.RemoteAddr().String())
		pr.ports[w.RemoteAddr().Network()+":"+port]++
		pr.ids[r.Id]++
		pr.mu.Unlock()
		if drop != nil && drop(r.Question[0].Name) {
			return
		}
		resolvertest.A("192.0.2.1").ServeDNS(w, r)
	})
	srv, err := listen.Plain("127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return pr, srv.Addr()
}

func (pr *portRecorder) sockets() (ports, ids int) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return len(pr.ports), len(pr.ids)
}

func exchange(t *testing.T, u upstream.Upstream, name string, timeout time.Duration) (*dns.Msg, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return u.Exchange(ctx, resolvertest.Query(name, dns.TypeA, false))
}

// TestUpstreamReusesSockets: sequential exchanges share one UDP socket (one source port), or one
// TCP connection, each with a fresh ID.
func TestUpstreamReusesSockets(t *testing.T) {
	for _, scheme := range []string{"udp", "tcp"} {
		t.Run(scheme, func(t *testing.T) {
			pr, addr := startRecorder(t, listen.Options{}, nil)
			u := resolvertest.Upstream(t, scheme+"://"+addr)
			for i := range 5 {
				if _, err := exchange(t, u, fmt.Sprintf("q%d.example.", i), 5*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			if ports, ids := pr.sockets(); ports != 1 || ids != 5 {
				t.Errorf("5 exchanges came from %d source ports with %d distinct IDs, want 1 port, 5 IDs", ports, ids)
			}
		})
	}
}

// TestUpstreamTimeoutKeepsSocket: an exchange that times out leaves the shared UDP socket to the
// others, and its late reply is dropped rather than taken as another query's answer.
func TestUpstreamTimeoutKeepsSocket(t *testing.T) {
	late := make(chan struct{})
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Question[0].Name == "slow.example." {
			<-late // answered only after the exchange gave up
		}
		resolvertest.A("192.0.2.1").ServeDNS(w, r)
	})
	srv, err := listen.Plain("127.0.0.1:0", h, listen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	u := resolvertest.Upstream(t, srv.Addr())
	if _, err := exchange(t, u, "first.example.", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := exchange(t, u, "slow.example.", 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	close(late)
	for i := range 20 { // the late reply arrives among these exchanges
		name := fmt.Sprintf("after-%d.example.", i)
		r, err := exchange(t, u, name, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Question[0].Name; got != name {
			t.Fatalf("asked %s, got the answer to %s", name, got)
		}
	}
	if n := upstream.UDPSockets(u); n != 1 {
		t.Errorf("%d UDP sockets open, want 1", n)
	}
}

// TestUpstreamRetiresOldSockets: a socket past its lifetime is not reused.
func TestUpstreamRetiresOldSockets(t *testing.T) {
	pr, addr := startRecorder(t, listen.Options{}, nil)
	u := resolvertest.Upstream(t, addr)
	upstream.SetUDPLifetime(u, time.Nanosecond)
	for i := range 3 {
		if _, err := exchange(t, u, fmt.Sprintf("q%d.example.", i), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if ports, _ := pr.sockets(); ports != 3 {
		t.Errorf("%d source ports, want 3 (one per exchange)", ports)
	}
}

// TestUpstreamTCPServerClosedConnection: a pooled TCP connection the server closed meanwhile
// costs a retry on a new connection, not a failed query.
func TestUpstreamTCPServerClosedConnection(t *testing.T) {
	pr, addr := startRecorder(t, listen.Options{MaxTCPQueries: 1}, nil)
	u := resolvertest.Upstream(t, "tcp://"+addr)
	for i := range 3 {
		if _, err := exchange(t, u, fmt.Sprintf("q%d.example.", i), 5*time.Second); err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
	}
	if ports, _ := pr.sockets(); ports != 3 {
		t.Errorf("%d connections, want 3 (the server closes each after one query)", ports)
	}
}

// TestUpstreamStaleSocketError: a reused socket whose upstream went away fails with a network
// error after one retry, not a hang.
func TestUpstreamStaleSocketError(t *testing.T) {
	h := resolvertest.A("192.0.2.1")
	srv, err := listen.Plain("127.0.0.1:0", h, listen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u := resolvertest.Upstream(t, srv.Addr())
	if _, err := exchange(t, u, "a.example.", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The pooled socket is connected to a port nobody listens on any more: the kernel answers
	// with ICMP port unreachable, which the read reports as "connection refused".
	_, err = exchange(t, u, "b.example.", 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v, want connection refused", err)
	}
}

// TestUpstreamPoolConcurrent runs many exchanges at once (for -race): every reply answers its
// own question, and sockets are shared rather than one per exchange.
func TestUpstreamPoolConcurrent(t *testing.T) {
	for _, scheme := range []string{"udp", "tcp"} {
		t.Run(scheme, func(t *testing.T) {
			pr, addr := startRecorder(t, listen.Options{}, nil)
			u := resolvertest.Upstream(t, scheme+"://"+addr)
			const workers, each = 20, 25
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						name := fmt.Sprintf("w%d-q%d.example.", w, i)
						r, err := exchange(t, u, name, 5*time.Second)
						if err != nil {
							t.Error(err)
							return
						}
						if r.Question[0].Name != name || len(r.Answer) != 1 || r.Answer[0].Header().Name != name {
							t.Errorf("asked %s, got %v", name, r)
						}
					}
				})
			}
			wg.Wait()
			want := workers // TCP: one connection per concurrent exchange
			if scheme == "udp" {
				want = 1 // one shared socket
			}
			if ports, _ := pr.sockets(); ports > want {
				t.Errorf("%d exchanges used %d sockets, want at most %d", workers*each, ports, want)
			}
			if n := upstream.IdleConns(u); n > workers {
				t.Errorf("%d idle TCP connections after the load, want at most %d", n, workers)
			}
			if n := upstream.UDPSockets(u); n > 1 {
				t.Errorf("%d UDP sockets open after the load, want at most 1 (shared)", n)
			}
		})
	}
}

// TestUpstreamOversizedUDPReply: a UDP reply larger than the read buffer (an upstream ignoring
// the size we advertised) is treated like a truncated one: the answer is fetched over TCP.
func TestUpstreamOversizedUDPReply(t *testing.T) {
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		n := 1
		if w.RemoteAddr().Network() == "udp" {
			n = 600 // ~10 kB, and no TC bit
		}
		for i := range n {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
				Txt: []string{fmt.Sprintf("record %d", i)}})
		}
		buf, err := m.Pack()
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = w.Write(buf)
	}))
	u := resolvertest.Upstream(t, up.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := u.Exchange(ctx, resolvertest.Query("big.example.", dns.TypeTXT, false))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 1 {
		t.Errorf("%d answers, want the 1 sent over TCP", len(r.Answer))
	}
	if up.Queries() != 2 {
		t.Errorf("upstream saw %d queries, want 2 (udp then tcp)", up.Queries())
	}
}
