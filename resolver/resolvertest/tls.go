package resolvertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/listen"
)

// Cert is a test certificate for 127.0.0.1, ::1 and the given names, signed by a fresh CA.
type Cert struct {
	Cert tls.Certificate
	// Pool trusts the CA that signed Cert.
	Pool *x509.CertPool
	// CertPEM and KeyPEM are the leaf in PEM, for writing to files; CAPEM is the CA.
	CertPEM, KeyPEM, CAPEM []byte
}

// NewCert makes a CA and a leaf certificate valid for an hour.
func NewCert(tb testing.TB, names ...string) *Cert {
	tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dnsfence test CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "dnsfence test"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		DNSNames: names, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &Cert{
		Cert:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		Pool:    pool,
		CertPEM: pemBlock("CERTIFICATE", der),
		KeyPEM:  pemBlock("EC PRIVATE KEY", keyDER),
		CAPEM:   pemBlock("CERTIFICATE", caDER),
	}
}

// TLSServer is a DoT or DoH server on loopback.
type TLSServer struct {
	// Addr is "127.0.0.1:port"; URL is the DoH endpoint (DoH servers only).
	Addr, URL  string
	handshakes atomic.Int64
	queries    atomic.Int64
	http2      atomic.Int64
}

// Handshakes counts TLS handshakes: with connection reuse, one for many queries.
func (s *TLSServer) Handshakes() int64 { return s.handshakes.Load() }

// Queries counts queries answered.
func (s *TLSServer) Queries() int64 { return s.queries.Load() }

// HTTP2 counts DoH requests that arrived over HTTP/2.
func (s *TLSServer) HTTP2() int64 { return s.http2.Load() }

func (s *TLSServer) tlsConfig(c *Cert) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{c.Cert}, MinVersion: tls.VersionTLS12}
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		s.handshakes.Add(1)
		return nil, nil
	}
	return cfg
}

// StartDoT serves h over DNS-over-TLS on 127.0.0.1 until the test ends.
func StartDoT(tb testing.TB, h dns.Handler, c *Cert) *TLSServer {
	tb.Helper()
	s := &TLSServer{}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.tlsConfig(c))
	if err != nil {
		tb.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	srv := &dns.Server{Listener: ln, Net: "tcp-tls", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		s.queries.Add(1)
		h.ServeDNS(w, r)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	tb.Cleanup(func() { _ = srv.ShutdownContext(context.Background()) })
	return s
}

// StartDoH serves h over DNS-over-HTTPS (POST and GET on /dns-query, HTTP/2) until the test ends.
func StartDoH(tb testing.TB, h dns.Handler, c *Cert) *TLSServer {
	tb.Helper()
	s := &TLSServer{}
	doh := listen.DoHHandler(func(w dns.ResponseWriter, m *dns.Msg) {
		s.queries.Add(1)
		h.ServeDNS(w, m)
	})
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			s.http2.Add(1)
		}
		doh.ServeHTTP(w, r)
	}))
	hs.EnableHTTP2 = true
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are what some tests want
	hs.TLS = s.tlsConfig(c)
	hs.StartTLS()
	tb.Cleanup(hs.Close)
	s.Addr = hs.Listener.Addr().String()
	s.URL = hs.URL + "/dns-query"
	return s
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
