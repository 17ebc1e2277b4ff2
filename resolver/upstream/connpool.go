package upstream

import (
	"context"
	"net"
	"sync"
	"time"
)

// connPool keeps idle TCP connections to one upstream address, so that an exchange does not pay
// for a handshake every time. A connection carries one exchange at a time and returns to the
// pool only after a clean one; one that failed or timed out is closed, since a late reply could
// still arrive on it. (UDP queries share a socket instead: see udpMux.)
type connPool struct {
	network, addr string
	dialer        net.Dialer
	// maxIdle bounds the idle connections kept; more are closed when returned.
	maxIdle int
	// maxIdleTime retires a connection that waited this long in the pool (0: never).
	maxIdleTime time.Duration

	mu     sync.Mutex
	idle   []*poolConn // most recently used last
	closed bool
}

// poolConn is a pooled connection and the buffers its exchanges reuse.
type poolConn struct {
	net.Conn
	used time.Time
	wbuf []byte
}

// tcpIdleTime is how long an idle upstream TCP connection is kept: servers close idle ones
// after a few seconds (RFC 7766), and a connection they closed costs a retry.
const tcpIdleTime = 5 * time.Second

// maxIdleConns bounds the idle connections kept per upstream and transport.
const maxIdleConns = 256

func newTCPPool(addr string) *connPool {
	return &connPool{network: "tcp", addr: addr, maxIdle: maxIdleConns, maxIdleTime: tcpIdleTime}
}

// get returns an idle connection, or dials a new one; reused says which.
func (p *connPool) get(ctx context.Context) (c *poolConn, reused bool, err error) {
	now := time.Now()
	var stale []*poolConn
	p.mu.Lock()
	for len(p.idle) > 0 {
		last := len(p.idle) - 1
		c, p.idle[last] = p.idle[last], nil
		p.idle = p.idle[:last]
		if !p.expired(c, now) {
			break
		}
		stale = append(stale, c)
		c = nil
	}
	p.mu.Unlock()
	for _, s := range stale {
		_ = s.Close()
	}
	if c != nil {
		return c, true, nil
	}
	conn, err := p.dialer.DialContext(ctx, p.network, p.addr)
	if err != nil {
		return nil, false, err
	}
	c = &poolConn{Conn: conn}
	return c, false, nil
}

// put returns c after a clean exchange; it is closed instead if it is too old or the pool is
// full or closed. The oldest idle connection is dropped if it has expired, so connections left
// idle when traffic falls are closed too.
func (p *connPool) put(c *poolConn) {
	now := time.Now()
	c.used = now
	if p.expired(c, now) {
		_ = c.Close()
		return
	}
	var drop *poolConn
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		drop = c
	} else {
		if len(p.idle) > 0 && p.expired(p.idle[0], now) {
			drop = p.idle[0]
			p.idle = append(p.idle[:0], p.idle[1:]...) // the append below reuses the freed slot
		}
		p.idle = append(p.idle, c)
	}
	p.mu.Unlock()
	if drop != nil {
		_ = drop.Close()
	}
}

func (p *connPool) expired(c *poolConn, now time.Time) bool {
	return p.maxIdleTime > 0 && !c.used.IsZero() && now.Sub(c.used) >= p.maxIdleTime
}

// close closes the idle connections; connections in use are closed when returned.
func (p *connPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}

// idleCount is the number of idle connections (for tests).
func (p *connPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
