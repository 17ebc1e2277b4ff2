package listen

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/internal/outbox"
)

// udpServer answers DNS over one UDP socket. miekg's server starts a goroutine per packet, whose
// stack then grows (is copied) through the chain every time, and allocates a dozen objects per
// packet for the session, control messages and addresses: together a third of the CPU on blocked
// queries. Here one reader reads the packets waiting, up to udpBatch per system call, and hands
// each to a long-lived worker that keeps its stack, its buffers and its reply writer; workers
// are created as the load needs them and retired after udpWorkerIdle without work. Replies
// leave in batches too (see package outbox).
type udpServer struct {
	conn    *net.UDPConn
	handler dns.Handler
	invalid func([]byte, error)
	// pktinfo: the socket is bound to a wildcard address, so each reply must be sent from the
	// address its query was sent to (IP_PKTINFO / IPV6_PKTINFO).
	pktinfo bool

	mu       sync.Mutex
	idle     []*udpWorker // most recently used last
	stopping bool

	inflight sync.WaitGroup // packets being answered
	// ticks counts retireIdle's ticks: a coarse clock for how long workers have been idle, so
	// that releasing a worker does not read the clock (~0.3 us on the VMs we measured).
	ticks atomic.Uint64
	done  chan struct{} // closed when the reader has stopped

	io  *udpIO
	out outbox.Outbox[outMsg] // replies leave in batches, udpBatch per sendmmsg
	// sendAll is s.sendBatch, made once: a method value made per flush would be allocated.
	sendAll func([]outMsg)

	// lead is set when the socket is read with blocking system calls (Options.BlockingReads).
	lead *leadState
}

// leadState is the reading of a socket in blocking mode. One worker at a time, the leader, reads
// a batch and answers its packets itself: blocked and cached names are answered without any
// other goroutine or thread waking. A query that is about to wait (a miss) tells the writer
// (WillWait), and the leader then hands the reading, with the rest of the batch, to an idle
// worker before it waits. Everything here but stop belongs to the current leader.
type leadState struct {
	ms        []inMsg
	next, got int // ms[next:got] are read and not yet answered
	// flushDue: the leader put a reply into an outbox nobody was flushing, so it must flush
	// before it waits (for packets, or with a query). It flushes once per batch instead of once
	// per reply.
	flushDue bool
	stop     atomic.Bool
	stopped  chan struct{} // closed by the leader that finds stop set
}

// Commands on udpWorker.work besides a packet's length.
const (
	workStop = -1
	workLead = -2
)

// udpBatch is the most datagrams read or written per system call.
const udpBatch = 32

// outMsg is a reply waiting in the outbox.
type outMsg struct {
	buf []byte
	to  netip.AddrPort
	oob []byte
}

// inMsg is a received datagram.
type inMsg struct {
	buf, oob []byte
	n, oobn  int
	trunc    bool // longer than buf
	from     netip.AddrPort
}

// udpWorker answers one packet at a time; the reader swaps the buffer it read the packet into
// with the worker's empty one.
type udpWorker struct {
	s    *udpServer
	work chan int // length of the packet in buf; -1 stops the worker
	buf  []byte
	oob  []byte
	oobn int
	from netip.AddrPort
	wbuf []byte
	idle uint64 // udpServer.ticks when it last became idle
	// leading: this worker reads the socket (blocking mode) and has not handed the reading on.
	leading bool
}

const (
	// udpReadSize is the largest query read; a larger datagram is dropped as invalid (queries
	// are a few hundred bytes even with EDNS options).
	udpReadSize = 4096
	// udpWorkerIdle is about how long an idle worker (and its stack and buffers) is kept.
	udpWorkerIdle = 10 * time.Second
	udpIdleTick   = udpWorkerIdle / 4
)

// newUDPServer serves conn; a readTimeout above zero reads it with blocking system calls, each
// bounded by it (Options.BlockingReads; blockingReadTimeout).
func newUDPServer(conn *net.UDPConn, h dns.Handler, invalid func([]byte, error), readTimeout time.Duration) (*udpServer, error) {
	io, err := newUDPIO(conn)
	if err != nil {
		return nil, err
	}
	s := &udpServer{conn: conn, handler: h, invalid: invalid, done: make(chan struct{}), io: io}
	s.sendAll = s.sendBatch
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil && ap.Addr().IsUnspecified() {
		s.pktinfo = true
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		if err4 != nil && err6 != nil {
			return nil, err4
		}
	}
	if s.invalid == nil {
		s.invalid = func([]byte, error) {}
	}
	if readTimeout > 0 {
		if err := io.detach(conn, readTimeout); err != nil {
			return nil, err
		}
		s.lead = &leadState{ms: s.inMsgs(), stopped: make(chan struct{})}
	}
	return s, nil
}

// serve reads packets until shutdown, a batch per system call, and hands each to a worker in
// exchange for the worker's empty buffer.
func (s *udpServer) serve() error {
	defer close(s.done)
	go s.retireIdle()
	if s.lead != nil {
		s.worker().work <- workLead
		<-s.lead.stopped
		return nil
	}
	ms := s.inMsgs()
	dispatch := func(n int) bool {
		for i := range ms[:n] {
			m := &ms[i]
			if m.n < 12 || m.trunc {
				s.invalid(m.buf[:m.n], dns.ErrShortRead)
				continue
			}
			w := s.worker()
			m.buf, w.buf = w.buf, m.buf
			m.oob, w.oob = w.oob, m.oob
			w.oobn, w.from = m.oobn, m.from
			s.inflight.Add(1)
			w.work <- m.n
		}
		// A short batch waits for the next datagram, where stop's deadline ends the loop; a
		// full one reads again at once, so it looks for the stop itself.
		return n < len(ms) || !s.isStopping()
	}
	for {
		err := s.io.readLoop(ms, dispatch)
		if err == nil || s.isStopping() {
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.ECONNREFUSED) {
			continue // a stale ICMP error surfaces on reads of an unconnected socket too
		}
		return err
	}
}

// inMsgs returns a batch of empty receive buffers.
func (s *udpServer) inMsgs() []inMsg {
	ms := make([]inMsg, udpBatch)
	for i := range ms {
		ms[i].buf = make([]byte, udpReadSize)
		if s.pktinfo {
			ms[i].oob = make([]byte, pktinfoSize)
		}
	}
	return ms
}

// leadReading makes w the leader (blocking mode, see leadState) until it hands the reading on
// or the server stops.
func (s *udpServer) leadReading(w *udpWorker) {
	l := s.lead
	for w.leading = true; w.leading; {
		if l.next == l.got {
			if l.flushDue {
				l.flushDue = false
				s.out.Send(s.sendAll, outMsgBuf, udpReadSize)
			}
			n, err := s.io.read(l.ms)
			// A stale ICMP error is harmless; any other leaves the socket unusable, and as in
			// polling mode UDP stops there while TCP goes on.
			if l.stop.Load() || err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				w.leading = false
				close(l.stopped)
				return
			}
			l.next, l.got = 0, n
			continue
		}
		m := &l.ms[l.next]
		l.next++
		if m.n < 12 || m.trunc {
			s.invalid(m.buf[:m.n], dns.ErrShortRead)
			continue
		}
		m.buf, w.buf = w.buf, m.buf
		m.oob, w.oob = w.oob, m.oob
		w.oobn, w.from = m.oobn, m.from
		s.inflight.Add(1)
		w.serve(m.n)
		s.inflight.Done()
	}
}

// WillWait implements resolver.Waiter: the query w answers is about to wait, so a leader hands
// the reading (and the rest of its batch) to another worker first. The replies it left to flush
// are sent now; they must not wait as long as this query.
func (w *udpWorker) WillWait() {
	if !w.leading {
		return
	}
	w.leading = false
	s := w.s
	if s.lead.flushDue {
		s.lead.flushDue = false
		s.out.Send(s.sendAll, outMsgBuf, udpReadSize)
	}
	s.worker().work <- workLead
}

// worker returns an idle worker, starting one if there is none. Before starting one it yields
// once: the workers woken for earlier packets are likely runnable, not blocked, and one of them
// may be idle again after a moment. Without that, a burst of queued packets would start a worker
// (a stack and buffers) per packet.
func (s *udpServer) worker() *udpWorker {
	for try := 0; ; try++ {
		s.mu.Lock()
		if n := len(s.idle); n > 0 {
			w := s.idle[n-1]
			s.idle[n-1] = nil
			s.idle = s.idle[:n-1]
			s.mu.Unlock()
			return w
		}
		s.mu.Unlock()
		if try > 0 {
			break
		}
		runtime.Gosched()
	}
	w := &udpWorker{s: s, work: make(chan int, 1), buf: make([]byte, udpReadSize), wbuf: make([]byte, 0, 512)}
	if s.pktinfo {
		w.oob = make([]byte, pktinfoSize)
	}
	go w.run()
	return w
}

// release puts w back among the idle workers, or stops it during shutdown.
func (s *udpServer) release(w *udpWorker) {
	w.idle = s.ticks.Load()
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		w.work <- workStop
		return
	}
	s.idle = append(s.idle, w)
	s.mu.Unlock()
}

func (w *udpWorker) run() {
	for n := range w.work {
		switch n {
		case workStop:
			return
		case workLead:
			w.s.leadReading(w)
			w.s.release(w)
			continue
		}
		w.serve(n)
		w.s.release(w)
		w.s.inflight.Done() // after release: once no packet is in flight, every worker is idle
	}
}

// serve answers the packet of length n in w.buf as miekg's server would: the accept function
// sees the header first, and a query whose body does not unpack gets FORMERR.
func (w *udpWorker) serve(n int) {
	s, m := w.s, w.buf[:n]
	if resolver.AcceptMsg(dns.Header{Bits: uint16(m[2])<<8 | uint16(m[3])}) != dns.MsgAccept {
		return
	}
	req := new(dns.Msg)
	if err := req.Unpack(m); err != nil {
		s.invalid(m, err)
		// req has the header and whatever unpacked before the error.
		req.SetRcodeFormatError(req)
		req.Zero = false
		req.Ns, req.Answer, req.Extra = nil, nil, nil
		_ = w.WriteMsg(req)
		return
	}
	s.handler.ServeDNS(w, req)
}

// retireIdle stops workers that have been idle for udpWorkerIdle, give or take a tick.
func (s *udpServer) retireIdle() {
	t := time.NewTicker(udpIdleTick)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.tick()
		}
	}
}

// tick advances the idle clock and stops the workers idle for more than udpWorkerIdle: the
// longest idle, at the front (workers are reused last in, first out).
func (s *udpServer) tick() {
	now := s.ticks.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(s.idle) && now-s.idle[n].idle > uint64(udpWorkerIdle/udpIdleTick) {
		s.idle[n].work <- workStop
		n++
	}
	s.idle = append(s.idle[:0], s.idle[n:]...)
}

func (s *udpServer) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// shutdown stops reading, waits until ctx is done for the packets being answered, then closes
// the socket and stops the workers.
func (s *udpServer) shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	s.mu.Unlock()
	if s.lead != nil {
		s.lead.stop.Store(true)
		s.io.stopRead()
	} else {
		_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	}
	<-s.done
	answered := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(answered)
	}()
	var err error
	select {
	case <-answered:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if s.lead != nil {
		s.io.closeFD()
	} else {
		_ = s.conn.Close()
	}
	s.mu.Lock()
	for _, w := range s.idle {
		w.work <- workStop
	}
	s.idle = nil
	s.mu.Unlock()
	return err
}

// pktinfoSize fits an IPv4 or IPv6 packet-info control message.
var pktinfoSize = max(len(ipv4.NewControlMessage(ipv4.FlagDst|ipv4.FlagInterface)),
	len(ipv6.NewControlMessage(ipv6.FlagDst|ipv6.FlagInterface)))

// The worker is the dns.ResponseWriter of the packet it answers.

// LocalAddr implements dns.ResponseWriter.
func (w *udpWorker) LocalAddr() net.Addr { return w.s.conn.LocalAddr() }

// RemoteAddr implements dns.ResponseWriter. The Handler uses ClientAddr, which does not allocate.
func (w *udpWorker) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.from) }

// ClientAddr is the client's address as the chain sees it: without a link-local zone, which
// would keep it out of every prefix (netip.Prefix.Contains).
func (w *udpWorker) ClientAddr() netip.Addr { return w.from.Addr().WithZone("").Unmap() }

// The Handler recycles a reply once WriteMsg has packed it, and reads the client from ClientAddr.
var _ resolver.PackingWriter = (*udpWorker)(nil)

// WriteMsg implements dns.ResponseWriter, packing into the worker's buffer. The reply is queued
// in the outbox and sent in a batch; send errors are not reported (UDP offers no delivery
// anyway).
func (w *udpWorker) WriteMsg(m *dns.Msg) error {
	buf, err := m.PackBuffer(w.wbuf[:cap(w.wbuf)])
	if err != nil {
		return err
	}
	w.s.queue(w, buf)
	return nil
}

// Write implements dns.ResponseWriter.
func (w *udpWorker) Write(b []byte) (int, error) {
	w.s.queue(w, append(w.wbuf[:0], b...))
	return len(b), nil
}

// queue puts the reply in buf (the worker's buffer, or a larger one packing allocated) in the
// outbox, gives the worker a spare buffer for its next reply, and sends the outbox if no other
// worker is sending it.
func (s *udpServer) queue(w *udpWorker, buf []byte) {
	var oob []byte
	if s.pktinfo {
		oob = sourceControl(w.oob[:w.oobn])
	}
	s.inflight.Add(1) // until sent: Shutdown closes the socket only after
	spare, lead := s.out.Put(outMsg{buf: buf, to: w.from, oob: oob})
	if spare == nil {
		spare = make([]byte, 0, 512)
	}
	w.wbuf = spare
	switch {
	case lead && w.leading:
		s.lead.flushDue = true // once the batch is answered
	case lead:
		s.out.Flush(s.sendAll, outMsgBuf, udpReadSize) // a rare huge reply's buffer is not kept
	}
}

func outMsgBuf(m outMsg) []byte { return m.buf }

// sendBatch sends a batch of queued replies, udpBatch per system call.
func (s *udpServer) sendBatch(batch []outMsg) {
	for rest := batch; len(rest) > 0; {
		n := s.send(rest[:min(len(rest), udpBatch)])
		rest = rest[n:]
	}
	s.inflight.Add(-len(batch))
}

// send writes up to udpBatch replies with one system call and returns how many it is done with:
// a datagram that fails is skipped.
func (s *udpServer) send(batch []outMsg) int {
	if n, err := s.io.write(batch); err == nil && n > 0 {
		return n
	}
	return 1 // the first one failed (sendmmsg reports the first datagram's error only)
}

// Close implements dns.ResponseWriter; the socket stays open (as with miekg's UDP writer).
func (w *udpWorker) Close() error { return nil }

// TsigStatus implements dns.ResponseWriter; dnsfence does not use TSIG.
func (w *udpWorker) TsigStatus() error { return nil }

// TsigTimersOnly implements dns.ResponseWriter.
func (w *udpWorker) TsigTimersOnly(bool) {}

// Hijack implements dns.ResponseWriter; a UDP socket is shared, so there is nothing to take over.
func (w *udpWorker) Hijack() {}

// sourceControl turns the packet info of a received query into the control message that sends
// the reply from the address the query was sent to (as miekg does for its UDP server).
func sourceControl(oob []byte) []byte {
	var cm6 ipv6.ControlMessage
	if cm6.Parse(oob) == nil && cm6.Dst != nil {
		if cm6.Dst.To4() == nil {
			return (&ipv6.ControlMessage{Src: cm6.Dst}).Marshal()
		}
		return (&ipv4.ControlMessage{Src: cm6.Dst}).Marshal()
	}
	var cm4 ipv4.ControlMessage
	if cm4.Parse(oob) == nil && cm4.Dst != nil {
		return (&ipv4.ControlMessage{Src: cm4.Dst}).Marshal()
	}
	return nil
}
