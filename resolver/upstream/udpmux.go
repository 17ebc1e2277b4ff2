package upstream

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/internal/outbox"
)

// udpMux carries every UDP query to one upstream over one shared connected socket at a time,
// as dnsdist does, instead of a pooled socket per query in flight. One reader goroutine per
// socket reads the replies (a batch per system call where the platform has recvmmsg) and hands
// each to the exchange waiting for its ID; the exchange then only writes its query and sleeps.
// A pooled socket per exchange cost a write, a read that found nothing, a wait in the poller and
// a second read for every forwarded query.
//
// Spoofing resistance (RFC 5452) is kept: each query gets a random ID not in flight on its
// socket, the socket is connected (the kernel drops datagrams from any other address or port)
// and its random source port is retired after udpSocketLifetime, and a reply is taken only if
// its ID and question match the query's.
type udpMux struct {
	addr string
	// lifetime bounds how long one socket (one source port) takes new queries.
	lifetime time.Duration

	open atomic.Int32 // sockets not yet closed (for tests)

	mu     sync.Mutex
	cur    *muxSock
	closed bool

	waiters sync.Pool  // *muxWaiter
	batches sync.Pool  // *readBatch, handed from retired sockets' readers to new ones
	dialer  net.Dialer // connected UDP sockets
	newIO   func(*net.UDPConn) (muxIO, error)
}

// muxSock is one connected socket and the exchanges waiting on it.
type muxSock struct {
	mux  *udpMux
	conn *net.UDPConn
	born time.Time
	io   muxIO
	// out sends queries in batches, as the listener sends replies.
	out outbox.Outbox[outQuery]
	// sendAll is s.sendBatch, made once: a method value made per flush would be allocated.
	sendAll func([]outQuery)
	bufs    [][]byte // sendBatch's list of buffers for write

	mu      sync.Mutex
	pending map[uint16]*muxWaiter
	users   int  // exchanges holding the socket; it closes when retired and unused
	retired bool // takes no new exchanges
	broken  bool // its reader stopped on an error: exchanges fail at once
	// exchanges counts the queries sent on s.
	exchanges int
	rnd       [64]byte
	rndPos    int
}

// muxWaiter is one exchange's state, reused across exchanges (the pool keeps a few).
type muxWaiter struct {
	q     []byte // the question section of the query (name, type, class), in qbuf
	qbuf  [4 + 255]byte
	wbuf  []byte // the packed query; handed to the outbox for a spare one when sent
	rbuf  []byte // the reply, copied here by the reader
	n     int
	trunc bool
	err   error // a socket error that ended the exchange
	// ignored is the last reply with our ID but another question (spoofed, or late and
	// confused): like any mismatch it is not taken, but it is reported if the exchange times out.
	ignored error
	done    chan struct{} // one token per delivery
	timer   *time.Timer
}

// muxIO reads and writes a socket's datagrams, in batches where the platform can.
type muxIO interface {
	// readLoop reads datagrams into b as they come and calls deliver with the number of each
	// batch (b.n[i] is the length of datagram i: len(b.bufs[i]) or more when it was cut short),
	// until the socket fails; it returns that error.
	readLoop(b *readBatch, deliver func(n int)) error
	// write sends some of bufs, at least one, and returns how many; an error is the first
	// unsent datagram's.
	write(bufs [][]byte) (int, error)
	// close releases what the muxIO holds besides the socket, once nothing is sent any more.
	close()
}

// outQuery is a query waiting in a socket's outbox.
type outQuery struct {
	buf []byte
	id  uint16
	w   *muxWaiter
}

func outQueryBuf(q outQuery) []byte { return q.buf }

// readBatch holds the buffers one read fills.
type readBatch struct {
	bufs [][]byte
	n    []int
}

// udpSocketLifetime bounds how long one source port is used for queries to an upstream. Every query
// has a random ID, but an off-path
// attacker that finds an open port (e.g. through ICMP rate-limit side channels, as in SADDNS)
// can use it only until the socket is retired.
const udpSocketLifetime = 2 * time.Second

// udpReadBufSize is the read buffer of a pooled UDP socket: larger than any reply to the sizes
// we advertise (at most EDNSBufferSize); a larger datagram is read as truncated and the query
// retried over TCP.
const udpReadBufSize = 4096

// muxBatch is the most replies read per system call.
const muxBatch = 16

// maxPending bounds the queries in flight on one socket, far below the 65,536 IDs, so that a
// random free ID is found in a try or two.
const maxPending = 16384

func newUDPMux(addr string) *udpMux {
	twins := twinsWork()
	m := &udpMux{addr: addr, lifetime: udpSocketLifetime,
		newIO: func(c *net.UDPConn) (muxIO, error) { return newMuxIO(c, twins) }}
	m.waiters.New = func() any {
		w := &muxWaiter{rbuf: make([]byte, udpReadBufSize+1), wbuf: make([]byte, 0, 512), done: make(chan struct{}, 1)}
		w.timer = time.NewTimer(time.Hour)
		w.timer.Stop()
		return w
	}
	m.batches.New = func() any {
		b := &readBatch{bufs: make([][]byte, muxBatch), n: make([]int, muxBatch)}
		for i := range b.bufs {
			b.bufs[i] = make([]byte, udpReadBufSize+1) // +1: a datagram that fills it was cut short
		}
		return b
	}
	return m
}

// exchange sends m with a fresh random ID and waits for the matching reply until deadline (or
// ctx's deadline, whichever is first; a zero deadline: ctx's alone). A failure other than a
// timeout on a socket that carried earlier queries may be an ICMP error those left behind, so
// the query is tried once more.
func (m *udpMux) exchange(ctx context.Context, q *dns.Msg, deadline time.Time) (*dns.Msg, error) {
	w := m.waiters.Get().(*muxWaiter)
	defer m.waiters.Put(w)
	buf, err := q.PackBuffer(w.wbuf[:cap(w.wbuf)])
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	w.wbuf = buf
	q0 := questionWire(buf)
	if q0 == nil {
		return nil, errors.New("query has no question")
	}
	w.q = w.qbuf[:copy(w.qbuf[:], q0)] // the outbox takes wbuf
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 { // the outbox took the buffer the query was packed in
			if w.wbuf, err = q.PackBuffer(w.wbuf[:cap(w.wbuf)]); err != nil {
				return nil, fmt.Errorf("pack query: %w", err)
			}
		}
		s, err := m.socket()
		if err != nil {
			return nil, err
		}
		reply, reused, err := s.exchange(ctx, w, deadline)
		s.release()
		if err != nil && reused && attempt == 0 && ctx.Err() == nil && !isTimeout(err) && !errors.Is(err, errTruncatedRead) {
			continue
		}
		return reply, err
	}
}

// socket returns the socket for a new exchange, opening a new one when the current one is
// past its lifetime.
func (m *udpMux) socket() (*muxSock, error) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, net.ErrClosed
	}
	s := m.cur
	if s == nil || now.Sub(s.born) >= m.lifetime {
		ns, err := m.dial(now)
		if err != nil {
			return nil, err
		}
		if s != nil {
			s.retire()
		}
		s, m.cur = ns, ns
	}
	s.mu.Lock()
	s.users++
	s.mu.Unlock()
	return s, nil
}

// dial opens a connected socket and starts its reader; called with m.mu held.
func (m *udpMux) dial(now time.Time) (*muxSock, error) {
	c, err := m.dialer.Dial("udp", m.addr)
	if err != nil {
		return nil, err
	}
	conn := c.(*net.UDPConn)
	_ = conn.SetReadBuffer(1 << 20) // bursts of replies wait here for the reader; the kernel caps it
	io, err := m.newIO(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	s := &muxSock{mux: m, conn: conn, born: now, io: io, pending: make(map[uint16]*muxWaiter), rndPos: 64}
	s.sendAll = s.sendBatch
	m.open.Add(1)
	go s.readLoop()
	return s, nil
}

// close closes the current socket once its exchanges are done; later exchanges fail.
func (m *udpMux) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.cur != nil {
		m.cur.retire()
		m.cur = nil
	}
}

// sockets is the number of sockets open (for tests).
func (m *udpMux) sockets() int { return int(m.open.Load()) }

// retire takes no new exchanges on s and closes it once the running ones are done.
func (s *muxSock) retire() {
	s.mu.Lock()
	if s.retired {
		s.mu.Unlock()
		return
	}
	s.retired = true
	idle := s.users == 0
	s.mu.Unlock()
	if idle {
		s.shut()
	}
}

// release ends an exchange's hold on s.
func (s *muxSock) release() {
	s.mu.Lock()
	s.users--
	idle := s.retired && s.users == 0
	s.mu.Unlock()
	if idle {
		s.shut()
	}
}

func (s *muxSock) shut() {
	s.io.close()
	_ = s.conn.Close() // the reader stops
	s.mux.open.Add(-1)
}

// exchange sends w's query on s and waits for the reply.
// reused says whether s carried queries before this one (a stale error may wait on it).
func (s *muxSock) exchange(ctx context.Context, w *muxWaiter, deadline time.Time) (reply *dns.Msg, reused bool, err error) {
	id, reused, err := s.register(w)
	if err != nil {
		return nil, false, err
	}
	binary.BigEndian.PutUint16(w.wbuf, id)
	s.send(id, w)
	if err := s.wait(ctx, id, w, deadline); err != nil {
		return nil, reused, err
	}
	if w.err != nil {
		return nil, reused, w.err
	}
	if w.trunc {
		return nil, reused, errTruncatedRead
	}
	// The reader took it only with our ID, the response bit and our question (checkQuestion).
	r := new(dns.Msg)
	if err := r.Unpack(w.rbuf[:w.n]); err != nil {
		return nil, reused, fmt.Errorf("udp read: %w", err)
	}
	return r, reused, nil
}

// send queues w's query (its buffer, for a spare one) and sends the outbox unless another
// exchange is sending it.
func (s *muxSock) send(id uint16, w *muxWaiter) {
	spare, lead := s.out.Put(outQuery{buf: w.wbuf, id: id, w: w})
	if spare == nil {
		spare = make([]byte, 0, 512)
	}
	w.wbuf = spare
	if lead {
		s.out.Flush(s.sendAll, outQueryBuf, 512) // a rare large query's buffer is not kept
	}
}

// sendBatch sends queued queries, muxBatch per system call. A query that cannot be sent fails its
// exchange at once.
func (s *muxSock) sendBatch(batch []outQuery) {
	for rest := batch; len(rest) > 0; {
		s.bufs = s.bufs[:0]
		for _, q := range rest[:min(len(rest), muxBatch)] {
			s.bufs = append(s.bufs, q.buf)
		}
		n, err := s.io.write(s.bufs)
		if err != nil {
			s.fail(rest[0].id, rest[0].w, fmt.Errorf("udp write: %w", err))
			n = 1
		}
		rest = rest[n:]
	}
}

// fail ends w's exchange with err if it is still waiting for the reply to id.
func (s *muxSock) fail(id uint16, w *muxWaiter, err error) {
	if s.unregister(id, w) {
		w.err = err
		w.done <- struct{}{}
	}
}

// register gives w a random ID not in flight on s.
func (s *muxSock) register(w *muxWaiter) (id uint16, reused bool, err error) {
	w.n, w.trunc, w.err, w.ignored = 0, false, nil, nil
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return 0, false, net.ErrClosed
	}
	if len(s.pending) >= maxPending {
		return 0, false, ErrUpstreamBusy
	}
	reused = s.exchanges > 0
	s.exchanges++
	for {
		if s.rndPos+2 > len(s.rnd) {
			_, _ = rand.Read(s.rnd[:]) // never fails (crypto/rand panics rather)
			s.rndPos = 0
		}
		id := binary.BigEndian.Uint16(s.rnd[s.rndPos:])
		s.rndPos += 2
		if _, taken := s.pending[id]; !taken {
			s.pending[id] = w
			return id, reused, nil
		}
	}
}

// unregister removes w if the reader has not taken it yet, and says whether it did.
func (s *muxSock) unregister(id uint16, w *muxWaiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[id] != w {
		return false
	}
	delete(s.pending, id)
	return true
}

// wait waits for the reader to deliver w's reply, until deadline or ctx is done.
func (s *muxSock) wait(ctx context.Context, id uint16, w *muxWaiter, deadline time.Time) error {
	var expired <-chan time.Time
	if !deadline.IsZero() {
		w.timer.Reset(time.Until(deadline))
		defer w.timer.Stop()
		expired = w.timer.C
	}
	var canceled <-chan struct{}
	if _, ok := ctx.Deadline(); !ok {
		// Only a context without a deadline (a background fetch at shutdown) is waited on: the
		// Handler's query contexts start a timer when asked for Done, and their deadline is ours.
		canceled = ctx.Done()
	}
	var err error
	select {
	case <-w.done:
		return nil
	case <-expired:
		err = os.ErrDeadlineExceeded
	case <-canceled:
		err = ctx.Err()
	}
	if !s.unregister(id, w) {
		<-w.done // delivered as we gave up: take it
		return nil
	}
	s.mu.Lock()
	ignored := w.ignored
	s.mu.Unlock()
	err = &net.OpError{Op: "read", Net: "udp", Addr: s.conn.RemoteAddr(), Err: err}
	if ignored != nil {
		err = fmt.Errorf("%w (after ignoring: %w)", err, ignored)
	}
	return fmt.Errorf("udp read: %w", err)
}

// readLoop reads replies until the socket is closed and hands each to its exchange.
func (s *muxSock) readLoop() {
	b := s.mux.batches.Get().(*readBatch)
	defer s.mux.batches.Put(b)
	deliver := func(n int) {
		for i := range n {
			s.deliver(b.bufs[i], b.n[i])
		}
	}
	for {
		err := s.io.readLoop(b, deliver)
		if errors.Is(err, net.ErrClosed) {
			s.failAll(net.ErrClosed)
			return
		}
		// An ICMP error (port unreachable: "connection refused") for a query on this
		// socket: it cannot be told which, and all go to the same address, so all fail.
		if errors.Is(err, syscall.ECONNREFUSED) {
			s.failAll(err)
			continue
		}
		s.abandon(err) // any other error would recur: no more exchanges on s
		return
	}
}

// deliver hands the datagram of length n in buf to the exchange it answers, if any.
func (s *muxSock) deliver(buf []byte, n int) {
	if n < 12 || buf[2]&0x80 == 0 { // too short, or not a response
		return
	}
	id := binary.BigEndian.Uint16(buf)
	trunc := n >= len(buf)
	s.mu.Lock()
	w := s.pending[id]
	if w == nil { // late (its exchange gave up), or spoofed
		s.mu.Unlock()
		return
	}
	if !trunc {
		if err := checkQuestion(buf[:n], w.q); err != nil {
			w.ignored = err
			s.mu.Unlock()
			return
		}
	}
	delete(s.pending, id)
	s.mu.Unlock()
	if trunc {
		w.trunc = true
	} else {
		w.n = copy(w.rbuf, buf[:n])
	}
	w.done <- struct{}{}
}

// abandon stops new exchanges on s, which the mux replaces, and fails those waiting with err.
func (s *muxSock) abandon(err error) {
	s.mu.Lock()
	s.broken = true
	s.mu.Unlock()
	m := s.mux
	m.mu.Lock()
	if m.cur == s {
		m.cur = nil
	}
	m.mu.Unlock()
	s.failAll(err)
	s.retire()
}

// failAll ends every exchange waiting on s with err.
func (s *muxSock) failAll(err error) {
	s.mu.Lock()
	var ws []*muxWaiter
	for id, w := range s.pending {
		delete(s.pending, id)
		ws = append(ws, w)
	}
	s.mu.Unlock()
	for _, w := range ws {
		w.err = fmt.Errorf("udp read: %w", err)
		w.done <- struct{}{}
	}
}

// questionWire returns the question section of the packed query msg (its first name is never
// compressed), or nil if it has none.
func questionWire(msg []byte) []byte {
	if len(msg) < 12 || binary.BigEndian.Uint16(msg[4:]) != 1 {
		return nil
	}
	off := 12
	for off < len(msg) {
		l := int(msg[off])
		if l == 0 {
			if off+5 > len(msg) {
				return nil
			}
			return msg[12 : off+5]
		}
		if l&0xC0 != 0 {
			return nil
		}
		off += 1 + l
	}
	return nil
}

// checkQuestion says whether the reply's question section is q (the name compared without case,
// RFC 4343), or the reply is a FORMERR without a question (old servers that reject EDNS send
// that). A question that does not fit the datagram makes the reply malformed, not mismatched.
func checkQuestion(reply, q []byte) error {
	switch qd := binary.BigEndian.Uint16(reply[4:]); {
	case qd == 0 && reply[3]&0x0F == dns.RcodeFormatError:
		return nil
	case qd != 1:
		return fmt.Errorf("%w: %d questions", ErrMismatch, qd)
	case len(reply) < 12+len(q):
		return errMalformedReply
	}
	got := reply[12 : 12+len(q)]
	name := len(q) - 4
	for i := range name { // length bytes are below 64, so folding them is harmless
		if lower(got[i]) != lower(q[i]) {
			return fmt.Errorf("%w: question", ErrMismatch)
		}
	}
	if string(got[name:]) != string(q[name:]) {
		return fmt.Errorf("%w: question type or class", ErrMismatch)
	}
	return nil
}

// errMalformedReply is a reply with our ID whose question does not fit in it.
var errMalformedReply = errors.New("malformed reply")

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
