package upstream_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

func encUpstream(t *testing.T, url string, opts upstream.Options) upstream.Upstream {
	t.Helper()
	u, err := upstream.Parse(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// askMany sends n queries at once through f and fails the test unless all are answered by want.
func askMany(t *testing.T, f *upstream.Forward, n int, want string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := resolvertest.Resolve(t, f, resolvertest.Query("q"+strings.Repeat("x", i%7)+".example", dns.TypeA, false))
			switch {
			case err != nil:
				errs <- err.Error()
			case len(resp.Msg.Answer) != 1 || resp.Msg.Answer[0].(*dns.A).A.String() != want:
				errs <- resp.Msg.String()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestDoTUpstream: many concurrent queries share one TLS connection (one handshake, pipelined);
// a broken connection is replaced on the next query.
func TestDoTUpstream(t *testing.T) {
	cert := resolvertest.NewCert(t, "dns.test")
	srv := resolvertest.StartDoT(t, resolvertest.A("192.0.2.30"), cert)
	u := encUpstream(t, "tls://"+srv.Addr, upstream.Options{RootCAs: cert.Pool})
	f := &upstream.Forward{Upstreams: []upstream.Upstream{u}}
	askMany(t, f, 1, "192.0.2.30") // open the connection
	askMany(t, f, 40, "192.0.2.30")
	if h := srv.Handshakes(); h != 1 {
		t.Errorf("%d TLS handshakes for 41 queries, want 1 (connection reuse)", h)
	}
	if q := srv.Queries(); q != 41 {
		t.Errorf("server saw %d queries, want 41", q)
	}
}

func TestDoTReconnects(t *testing.T) {
	cert := resolvertest.NewCert(t)
	srv := resolvertest.StartDoT(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		resolvertest.A("192.0.2.31").ServeDNS(w, r)
		if r.Question[0].Name == "hangup.example." {
			_ = w.Close() // the server drops the connection after answering
		}
	}), cert)
	f := &upstream.Forward{Upstreams: []upstream.Upstream{encUpstream(t, "tls://"+srv.Addr, upstream.Options{RootCAs: cert.Pool})}}
	if _, err := resolvertest.Resolve(t, f, resolvertest.Query("hangup.example", dns.TypeA, false)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the client notice the close (the retry covers it if not)
	askMany(t, f, 3, "192.0.2.31")
	if h := srv.Handshakes(); h != 2 {
		t.Errorf("%d handshakes, want 2 (one reconnect)", h)
	}
}

// TestDoTCertificateChecks: an untrusted certificate and a wrong name are rejected; the right
// tls_server_name or bootstrap-resolved host name is accepted.
func TestDoTCertificateChecks(t *testing.T) {
	cert := resolvertest.NewCert(t, "dns.test")
	other := resolvertest.NewCert(t, "dns.test")
	srv := resolvertest.StartDoT(t, resolvertest.A("192.0.2.32"), cert)
	bootstrap := resolvertest.Start(t, resolvertest.A("127.0.0.1"))
	_, port, _ := strings.Cut(srv.Addr, ":")
	for _, tc := range []struct {
		name, url string
		opts      upstream.Options
		ok        bool
	}{
		{"trusted IP", "tls://" + srv.Addr, upstream.Options{RootCAs: cert.Pool}, true},
		{"untrusted CA", "tls://" + srv.Addr, upstream.Options{RootCAs: other.Pool}, false},
		{"right server name", "tls://" + srv.Addr + "?tls_server_name=dns.test", upstream.Options{RootCAs: cert.Pool}, true},
		{"wrong server name", "tls://" + srv.Addr + "?tls_server_name=evil.test", upstream.Options{RootCAs: cert.Pool}, false},
		{"host name via bootstrap", "tls://dns.test:" + port, upstream.Options{RootCAs: cert.Pool, Bootstrap: []string{bootstrap.Addr}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &upstream.Forward{Upstreams: []upstream.Upstream{encUpstream(t, tc.url, tc.opts)}, AttemptTimeout: time.Second}
			_, err := resolvertest.Resolve(t, f, resolvertest.Query("c.example", dns.TypeA, false))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestDoHUpstream(t *testing.T) {
	cert := resolvertest.NewCert(t, "doh.test")
	srv := resolvertest.StartDoH(t, resolvertest.A("192.0.2.40"), cert)
	f := &upstream.Forward{Upstreams: []upstream.Upstream{encUpstream(t, srv.URL, upstream.Options{RootCAs: cert.Pool})}}
	askMany(t, f, 1, "192.0.2.40")
	askMany(t, f, 30, "192.0.2.40")
	if h := srv.Handshakes(); h != 1 {
		t.Errorf("%d TLS handshakes for 31 queries, want 1 (keep-alive)", h)
	}
	if n := srv.HTTP2(); n != 31 {
		t.Errorf("%d of 31 requests over HTTP/2", n)
	}
	// A generous timeout: verifying against the system roots first loads them, which alone takes
	// most of a second under -race on a busy machine.
	bad := &upstream.Forward{Upstreams: []upstream.Upstream{encUpstream(t, srv.URL, upstream.Options{})}, AttemptTimeout: 10 * time.Second}
	if _, err := resolvertest.Resolve(t, bad, resolvertest.Query("c.example", dns.TypeA, false)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted DoH certificate: err = %v", err)
	}
}
