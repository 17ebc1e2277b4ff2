package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/miekg/dns"
)

// dohUpstream speaks DNS over HTTPS (RFC 8484): POST application/dns-message over a kept-alive
// HTTP/2 connection. The query ID is 0, as the RFC recommends; the reply is checked against the
// question like any other.
type dohUpstream struct {
	name   string // the URL, for logs and metrics
	url    string
	client *http.Client
}

var _ Upstream = (*dohUpstream)(nil)

func newDoHUpstream(rawURL string, hr *hostResolver, tlsCfg *tls.Config) *dohUpstream {
	d := &net.Dialer{}
	tr := &http.Transport{
		TLSClientConfig:   tlsCfg,
		ForceAttemptHTTP2: true,
		// Connect to the resolved (or bootstrap) address whatever the URL's host says; the TLS
		// name stays the URL's host (or tls_server_name).
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			addr, err := hr.addr(ctx)
			if err != nil {
				return nil, err
			}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				hr.forget() // the name may have moved
			}
			return c, err
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	return &dohUpstream{name: rawURL, url: rawURL, client: &http.Client{Transport: tr}}
}

func (u *dohUpstream) Address() string { return u.name }

func (u *dohUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	buf, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	buf[0], buf[1] = 0, 0
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(buf))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/dns-message")
	req.Header.Set("Accept", "application/dns-message")
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("doh: HTTP %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, dns.MaxMsgSize+1))
	if err != nil {
		return nil, fmt.Errorf("doh: read: %w", err)
	}
	if len(body) > dns.MaxMsgSize {
		return nil, fmt.Errorf("doh: answer over %d bytes", dns.MaxMsgSize)
	}
	r := new(dns.Msg)
	if err := r.Unpack(body); err != nil {
		return nil, fmt.Errorf("%w: doh: %w", ErrMismatch, err)
	}
	if err := checkReply(r, 0, m); err != nil {
		return nil, err
	}
	return r, nil
}
