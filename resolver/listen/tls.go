package listen

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
)

// CertReloader serves a certificate and key from files and picks up new ones (certbot or
// cert-manager renewals, symlink swaps) on the next handshake after they change, without dropping
// established connections. A pair that fails to load keeps the last good one.
type CertReloader struct {
	certFile, keyFile string
	// OnError, if set, is told about a changed pair that failed to load.
	OnError func(error)

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     string // size and mtime of both files when cert was loaded
	lastCheck time.Time
}

// NewCertReloader loads the pair once; an error here is a startup error.
func NewCertReloader(certFile, keyFile string) (*CertReloader, error) {
	cr := &CertReloader{certFile: certFile, keyFile: keyFile}
	stamp, err := cr.fileStamp()
	if err != nil {
		return nil, err
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	cr.cert, cr.stamp = &c, stamp
	return cr, nil
}

func (cr *CertReloader) fileStamp() (string, error) {
	var s string
	for _, f := range []string{cr.certFile, cr.keyFile} {
		fi, err := os.Stat(f) // follows symlinks, so a swapped link target counts as a change
		if err != nil {
			return "", fmt.Errorf("tls certificate: %w", err)
		}
		s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// GetCertificate fits tls.Config.GetCertificate. It looks at the files at most once a second.
func (cr *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if time.Since(cr.lastCheck) >= time.Second {
		cr.lastCheck = time.Now()
		if stamp, err := cr.fileStamp(); err == nil && stamp != cr.stamp {
			c, err := tls.LoadX509KeyPair(cr.certFile, cr.keyFile)
			if err != nil {
				if cr.OnError != nil {
					cr.OnError(err)
				}
			} else {
				cr.cert, cr.stamp = &c, stamp
			}
		}
	}
	return cr.cert, nil
}

func (cr *CertReloader) config(protos ...string) *tls.Config {
	return &tls.Config{GetCertificate: cr.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: protos}
}

// DoT serves h over DNS-over-TLS (RFC 7858) on addr.
func DoT(addr string, h *resolver.Handler, cr *CertReloader, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen tls: %w", err)
	}
	tl := tls.NewListener(limit(ln, opts), cr.config("dot"))
	srv := tcpServer(tl, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		h.ServeTransport(w, r, resolver.DoT)
	}), opts)
	srv.Net = "tcp-tls"
	if err := start(srv); err != nil {
		ln.Close()
		return nil, fmt.Errorf("serve tls %s: %w", addr, err)
	}
	return &Server{addr: ln.Addr().String(), shutdown: []func(context.Context) error{srv.ShutdownContext}}, nil
}

// DoH serves h over DNS-over-HTTPS (RFC 8484: GET ?dns= and POST, HTTP/2) on addr at path.
func DoH(addr, path string, h *resolver.Handler, cr *CertReloader, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen https: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(path, DoHHandler(func(w dns.ResponseWriter, m *dns.Msg) { h.ServeTransport(w, m, resolver.DoH) }))
	idle := opts.TCPIdleTimeout
	if idle <= 0 {
		idle = 10 * time.Second
	}
	hs := &http.Server{
		Handler: mux, TLSConfig: cr.config("h2", "http/1.1"),
		ReadHeaderTimeout: idle, IdleTimeout: idle * 3, ReadTimeout: idle,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(limit(ln, opts), "", "") }()
	select {
	case err := <-errc:
		return nil, fmt.Errorf("serve https %s: %w", addr, err)
	case <-time.After(10 * time.Millisecond): // ServeTLS fails at once or not at all
	}
	return &Server{addr: ln.Addr().String(), shutdown: []func(context.Context) error{hs.Shutdown}}, nil
}

// DoHHandler answers RFC 8484 requests (GET ?dns= and POST application/dns-message) by calling
// serve with the decoded query; no reply written means 503 (the query was dropped).
func DoHHandler(serve func(dns.ResponseWriter, *dns.Msg)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serveDoH(w, r, serve) })
}

func serveDoH(w http.ResponseWriter, r *http.Request, serve func(dns.ResponseWriter, *dns.Msg)) {
	var wire []byte
	var err error
	switch r.Method {
	case http.MethodGet:
		wire, err = base64.RawURLEncoding.DecodeString(r.URL.Query().Get("dns"))
	case http.MethodPost:
		if ct := r.Header.Get("Content-Type"); ct != "application/dns-message" {
			http.Error(w, "want Content-Type: application/dns-message", http.StatusUnsupportedMediaType)
			return
		}
		wire, err = io.ReadAll(io.LimitReader(r.Body, dns.MaxMsgSize+1))
		if err == nil && len(wire) > dns.MaxMsgSize {
			err = errors.New("too large")
		}
	default:
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
		return
	}
	m := new(dns.Msg)
	if err != nil || len(wire) == 0 || m.Unpack(wire) != nil || m.Response {
		http.Error(w, "not a DNS query", http.StatusBadRequest)
		return
	}
	rw := &dohWriter{remote: r.RemoteAddr}
	serve(rw, m)
	if rw.reply == nil { // dropped (overload, access drop, rate limit)
		http.Error(w, "no answer", http.StatusServiceUnavailable)
		return
	}
	out, err := rw.reply.Pack()
	if err != nil {
		http.Error(w, "bad reply", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/dns-message")
	if ttl, ok := minTTL(rw.reply); ok {
		w.Header().Set("Cache-Control", fmt.Sprintf("max-age=%d", ttl))
	}
	_, _ = w.Write(out)
}

// minTTL is the smallest TTL of the answer, for HTTP caching (RFC 8484 5.1).
func minTTL(m *dns.Msg) (uint32, bool) {
	var ttl uint32
	found := false
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			if t := rr.Header().Ttl; !found || t < ttl {
				ttl, found = t, true
			}
		}
	}
	return ttl, found
}

// dohWriter captures the Handler's reply for the HTTP response.
type dohWriter struct {
	remote string
	reply  *dns.Msg
}

func (w *dohWriter) LocalAddr() net.Addr { return &net.TCPAddr{} }
func (w *dohWriter) RemoteAddr() net.Addr {
	a, err := net.ResolveTCPAddr("tcp", w.remote)
	if err != nil {
		return &net.TCPAddr{}
	}
	return a
}
func (w *dohWriter) WriteMsg(m *dns.Msg) error { w.reply = m; return nil }
func (w *dohWriter) Write(b []byte) (int, error) {
	w.reply = new(dns.Msg)
	return len(b), w.reply.Unpack(b)
}
func (w *dohWriter) Close() error        { return nil }
func (w *dohWriter) TsigStatus() error   { return nil }
func (w *dohWriter) TsigTimersOnly(bool) {}
func (w *dohWriter) Hijack()             {}
