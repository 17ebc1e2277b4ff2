package upstream

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// dotUpstream speaks DNS over TLS (RFC 7858) on one long-lived connection: queries are pipelined
// (written as they come, answers matched by ID), and a broken connection is replaced on the next
// query.
type dotUpstream struct {
	name    string // address for logs and metrics
	resolve *hostResolver
	tls     *tls.Config
	dialer  net.Dialer

	mu   sync.Mutex
	conn *dotConn
}

var _ Upstream = (*dotUpstream)(nil)

func (u *dotUpstream) Address() string { return u.name }

// dotConn is one TLS connection and the queries waiting for their answers on it.
type dotConn struct {
	c    *tls.Conn
	wmu  sync.Mutex // one writer at a time
	mu   sync.Mutex
	wait map[uint16]chan *dns.Msg
	err  error // set once the connection broke; then wait is drained
	done chan struct{}
}

// ErrConnClosed is the error of queries outstanding on a DoT connection that broke.
var ErrConnClosed = errors.New("connection closed")

func (u *dotUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	buf, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	// A reused connection may have been closed by the server while idle: retry once on a new one.
	for attempt := 0; ; attempt++ {
		c, fresh, err := u.get(ctx)
		if err != nil {
			return nil, err
		}
		reply, err := c.exchange(ctx, buf, m)
		if err != nil && !fresh && attempt == 0 && errors.Is(err, ErrConnClosed) && ctx.Err() == nil {
			continue
		}
		return reply, err
	}
}

// get returns the live connection, dialling a new one if there is none.
func (u *dotUpstream) get(ctx context.Context) (*dotConn, bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != nil && u.conn.alive() {
		return u.conn, false, nil
	}
	addr, err := u.resolve.addr(ctx)
	if err != nil {
		return nil, false, err
	}
	raw, err := u.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		u.resolve.forget() // the name may have moved
		return nil, false, err
	}
	tc := tls.Client(raw, u.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, false, fmt.Errorf("tls handshake: %w", err)
	}
	c := &dotConn{c: tc, wait: map[uint16]chan *dns.Msg{}, done: make(chan struct{})}
	go c.readLoop()
	u.conn = c
	return c, true, nil
}

func (c *dotConn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *dotConn) exchange(ctx context.Context, buf []byte, q *dns.Msg) (*dns.Msg, error) {
	ch := make(chan *dns.Msg, 1)
	c.mu.Lock()
	if err := c.err; err != nil {
		c.mu.Unlock()
		return nil, err
	}
	id := dns.Id()
	for _, taken := c.wait[id]; taken; _, taken = c.wait[id] {
		id = dns.Id()
	}
	c.wait[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.wait, id)
		c.mu.Unlock()
	}()

	pkt := make([]byte, 2+len(buf))
	binary.BigEndian.PutUint16(pkt, uint16(len(buf)))
	copy(pkt[2:], buf)
	binary.BigEndian.PutUint16(pkt[2:], id)
	c.wmu.Lock()
	if d, ok := ctx.Deadline(); ok {
		_ = c.c.SetWriteDeadline(d)
	}
	_, err := c.c.Write(pkt)
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("%w: write: %w", ErrConnClosed, err))
		return nil, c.failure()
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, c.failure()
		}
		if err := checkReply(r, id, q); err != nil {
			return nil, err
		}
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readLoop hands each answer to the query waiting for its ID; it ends when the connection breaks.
func (c *dotConn) readLoop() {
	var lenbuf [2]byte
	for {
		// An idle connection is closed after a while; servers close theirs too (RFC 7766).
		_ = c.c.SetReadDeadline(time.Now().Add(dotIdleTimeout))
		if _, err := io.ReadFull(c.c, lenbuf[:]); err != nil {
			c.fail(fmt.Errorf("%w: %w", ErrConnClosed, err))
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(lenbuf[:]))
		if _, err := io.ReadFull(c.c, msg); err != nil {
			c.fail(fmt.Errorf("%w: %w", ErrConnClosed, err))
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(msg); err != nil {
			continue // not for anyone we can name; the waiter times out
		}
		c.mu.Lock()
		ch := c.wait[r.Id]
		delete(c.wait, r.Id)
		c.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

const dotIdleTimeout = 30 * time.Second

func (c *dotConn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// fail marks the connection broken, closes it and releases every waiter.
func (c *dotConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
	_ = c.c.Close()
	for id, ch := range c.wait {
		close(ch)
		delete(c.wait, id)
	}
}
