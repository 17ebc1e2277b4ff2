package main

import (
	"context"
	endian "encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkServeUDP measures the whole server in-process over loopback UDP: the built chain, the
// listener and, for forwarded names (cache off), the exchange with an upstream. The clients and the upstream
// use raw sockets and canned packets, so allocs/op is (nearly) the server's own.
//
//	go test ./cmd/dnsfence -run '^$' -bench ServeUDP -benchmem -cpuprofile cpu.out
func BenchmarkServeUDP(b *testing.B) {
	dir := b.TempDir()
	var list strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&list, "blocked-%d.bench.example\n", i)
	}
	listPath := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(listPath, []byte(list.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	up := startCannedUpstream(b)
	server := func(extra string) string {
		cfg := filepath.Join(b.TempDir(), "dnsfence.yaml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: ["127.0.0.1:0"]
upstreams: ["%s"]
rate_limit: {client_qps: 0}
http: {listen: ""}
log: {level: error}
blocklists: [{name: bench, path: %q}]
%s
`, up, listPath, extra)), 0o644); err != nil {
			b.Fatal(err)
		}
		return startForBench(b, "-config", cfg)
	}
	before := runtime.GOMAXPROCS(0)
	cached, uncached := server(""), server("cache: {max_entries: 0}")
	// Each server raised GOMAXPROCS for its UDP readers (reserveReaders), but the testing package
	// sets it again for every benchmark (-cpu): raise it in each, or the readers hold every P
	// and the clients run only when the runtime preempts them.
	readers := runtime.GOMAXPROCS(0) - before

	for _, bc := range []struct {
		name, addr, format string
		rcode              int
	}{
		{"blocked", cached, "blocked-%d.bench.example.", dns.RcodeNameError},
		{"cached", cached, "host-%d.cached.example.", dns.RcodeSuccess},
		{"forwarded", uncached, "host-%d.allowed.example.", dns.RcodeSuccess},
		// Every query a new name through the cache: a miss, a forward and a store (W3 in make bench).
		{"missed", cached, "m%08d.missed.example.", dns.RcodeSuccess},
	} {
		b.Run(bc.name, func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + readers))
			var pkts [][]byte
			for i := range 1000 {
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf(bc.format, i), dns.TypeA)
				p, err := m.Pack()
				if err != nil {
					b.Fatal(err)
				}
				pkts = append(pkts, p)
			}
			c, err := net.Dial("udp", bc.addr)
			if err != nil {
				b.Fatal(err)
			}
			r := make([]byte, 1232)
			for i, p := range pkts { // fills the cache
				if err := exchangeRaw(c, p, r, endian.BigEndian.Uint16(p), bc.rcode); err != nil {
					b.Fatalf("warm-up query %d: %v", i, err)
				}
			}
			c.Close()
			var next atomic.Uint32
			b.SetParallelism(16)
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			defer func() {
				// Process CPU time (server and clients) is steadier than wall time on a busy machine.
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			}()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("udp", bc.addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				q := make([]byte, 512)
				r := make([]byte, 1232)
				for pb.Next() {
					n := next.Add(1)
					p := pkts[int(n)%len(pkts)]
					q = append(q[:0], p...)
					endian.BigEndian.PutUint16(q, uint16(n))
					if bc.name == "missed" { // a name never asked before: its 8 digits are 10^7+n's
						for i, v := 12+9, 10000000+n; i >= 12+2; i, v = i-1, v/10 {
							q[i] = byte('0' + v%10)
						}
					}
					if err := exchangeRaw(c, q, r, uint16(n), bc.rcode); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// exchangeRaw sends q and waits for the reply with ID id, resending after a loss (loopback
// under load can drop when a socket buffer is full).
func exchangeRaw(c net.Conn, q, r []byte, id uint16, rcode int) error {
	for try := 0; try < 5; try++ {
		if _, err := c.Write(q); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, err := c.Read(r)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // resend
				}
				return err
			}
			if n < 12 || endian.BigEndian.Uint16(r) != id {
				continue // a late reply to an earlier try
			}
			if got := int(r[3] & 0xf); got != rcode {
				return fmt.Errorf("rcode %d, want %d", got, rcode)
			}
			return nil
		}
	}
	return fmt.Errorf("no reply to query %d", id)
}

// startForBench runs dnsfence in-process and returns its DNS address; it stops with the benchmark.
func startForBench(b *testing.B, args ...string) string {
	b.Helper()
	ready := make(chan *instance, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runWith(ctx, args, io.Discard, io.Discard, hooks{ready: func(i *instance) { ready <- i }})
	}()
	var inst *instance
	select {
	case inst = <-ready:
	case err := <-done:
		cancel()
		b.Fatalf("dnsfence exited at start: %v", err)
	}
	b.Cleanup(func() {
		cancel()
		<-done
	})
	return inst.dnsAddrs[0]
}

// startCannedUpstream answers every query with one A record (192.0.2.1, TTL 60) built in place,
// without allocating, so the benchmark's allocations are the server's.
func startCannedUpstream(b *testing.B) string {
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pc.Close() })
	for range 4 {
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				reply, ok := cannedReply(buf[:n])
				if ok {
					_, _ = pc.WriteToUDPAddrPort(reply, from)
				}
			}
		}()
	}
	return pc.LocalAddr().String()
}

// cannedReply turns the query in p into its reply in place: header and question kept, one answer.
func cannedReply(p []byte) ([]byte, bool) {
	if len(p) < 12 {
		return nil, false
	}
	off := 12
	for off < len(p) && p[off] != 0 {
		off += int(p[off]) + 1
	}
	off += 5 // root label, qtype, qclass
	if off > len(p) {
		return nil, false
	}
	p = p[:off]
	p[2] |= 0x80                          // QR
	p[3] = 0x80                           // RA, NOERROR
	endian.BigEndian.PutUint16(p[6:], 1)  // ANCOUNT
	endian.BigEndian.PutUint16(p[8:], 0)  // NSCOUNT
	endian.BigEndian.PutUint16(p[10:], 0) // ARCOUNT
	p = append(p, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1)
	return p, true
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
