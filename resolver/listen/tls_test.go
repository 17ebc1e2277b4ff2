package listen_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/listen"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

func writeCert(t *testing.T, dir string, c *resolvertest.Cert) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string][]byte{certFile: c.CertPEM, keyFile: c.KeyPEM} {
		tmp := f + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// TestEncryptedListeners: our DoT and DoH listeners answer our own DoT and DoH clients through
// the same handler (transport reported), and pick up a swapped certificate for new connections.
func TestEncryptedListeners(t *testing.T) {
	dir := t.TempDir()
	first, second := resolvertest.NewCert(t), resolvertest.NewCert(t)
	cr, err := listen.NewCertReloader(writeCert(t, dir, first))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan resolver.Transport, 10)
	h := &resolver.Handler{Resolver: resolver.ResolverFunc(func(ctx context.Context, req *resolver.Request) (*resolver.Response, error) {
		seen <- req.Transport
		return resolvertest.Answers(1).Resolve(ctx, req)
	})}
	dot, err := listen.DoT("127.0.0.1:0", h, cr, listen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dot.Shutdown(context.Background()) })
	doh, err := listen.DoH("127.0.0.1:0", "/dns-query", h, cr, listen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = doh.Shutdown(context.Background()) })

	ask := func(url string, c *resolvertest.Cert) error {
		u, err := upstream.Parse(url, upstream.Options{RootCAs: c.Pool})
		if err != nil {
			t.Fatal(err)
		}
		f := &upstream.Forward{Upstreams: []upstream.Upstream{u}, AttemptTimeout: 2 * time.Second}
		_, err = resolvertest.Resolve(t, f, resolvertest.Query("l.example", dns.TypeA, false))
		return err
	}
	dotURL, dohURL := "tls://"+dot.Addr(), "https://"+doh.Addr()+"/dns-query"
	for url, want := range map[string]resolver.Transport{dotURL: resolver.DoT, dohURL: resolver.DoH} {
		if err := ask(url, first); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if got := <-seen; got != want {
			t.Errorf("%s: transport %v, want %v", url, got, want)
		}
	}

	// RFC 8484 GET: the query base64url-encoded in ?dns=.
	wire, _ := resolvertest.Query("get.example", dns.TypeA, false).Pack()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: first.Pool}, ForceAttemptHTTP2: true}}
	resp, err := hc.Get(dohURL + "?dns=" + base64.RawURLEncoding.EncodeToString(wire))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := new(dns.Msg)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || m.Unpack(body) != nil || len(m.Answer) != 1 ||
		resp.Header.Get("Content-Type") != "application/dns-message" || resp.Header.Get("Cache-Control") != "max-age=60" {
		t.Errorf("DoH GET: %s %s %v %v", resp.Status, resp.Proto, resp.Header, m)
	}
	<-seen
	if resp, err := hc.Post(dohURL, "text/plain", strings.NewReader("x")); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("POST with the wrong type: %v %v", resp, err)
	}

	writeCert(t, dir, second)
	time.Sleep(1100 * time.Millisecond) // the reloader looks at the files at most once a second
	for _, url := range []string{dotURL, dohURL} {
		if err := ask(url, second); err != nil {
			t.Errorf("%s after the swap, new certificate: %v", url, err)
		}
		if err := ask(url, first); err == nil {
			t.Errorf("%s after the swap still serves the old certificate", url)
		}
	}
}
