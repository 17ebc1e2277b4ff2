package main

import (
	enc "encoding/binary"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// Header flag bits of the second 16-bit word of a DNS header (RFC 1035 §4.1.1, RFC 4035 §3.2).
const (
	hdrAA = 1 << 10
	hdrRD = 1 << 8
	hdrRA = 1 << 7
	hdrZ  = 1 << 6
	hdrAD = 1 << 5
	hdrCD = 1 << 4
)

// rawExchange sends the packet b over UDP to addr and returns the reply's bytes, so a test can
// look at header bits that a parsed message would hide or that dig cannot set.
func rawExchange(t *testing.T, addr string, b []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	return buf[:n]
}

// TestConformance sends the queries a DNS compliance suite (ISC genreport) sends to the real
// binary: EDNS version negotiation (RFC 6891 §6.1.3), unknown opcodes (RFC 1035), TSIG-signed
// queries through a forwarder without keys (RFC 8945 §5.5), AA on forwarded answers and
// failover on REFUSED.
func TestConformance(t *testing.T) {
	const keyName, secret = "tsig-key.", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=" // base64
	var signedQueries, aaQueries atomic.Int64
	up := resolvertest.Start(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if strings.HasPrefix(q.Name, "aa.") {
			aaQueries.Add(1)
			m.Authoritative = true
		}
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 53)}}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), opt.Do())
		}
		_ = w.WriteMsg(m)
	}))
	signer := startTSIGServer(t, keyName, secret, &signedQueries)
	refused := resolvertest.Start(t, resolvertest.Rcode(dns.RcodeRefused))
	refused2 := resolvertest.Start(t, resolvertest.Rcode(dns.RcodeRefused))
	list := writeFile(t, t.TempDir(), "l.txt", "blocked.example\n")
	cfg := writeFile(t, t.TempDir(), "c.yaml", "listen: [127.0.0.1:0]\nupstreams: ["+up.Addr+"]\n"+
		"blocklists: [{name: l, path: "+list+"}]\nupstream_timeout: 500ms\n"+
		"forward_zones:\n"+
		"  - {zone: signed.example, upstreams: ["+signer+"]}\n"+
		"  - {zone: failover.example, upstreams: ["+refused.Addr+", "+up.Addr+"]}\n"+
		"  - {zone: refused.example, upstreams: ["+refused.Addr+", "+refused2.Addr+"]}\n")
	d := startBinary(t, "-config", cfg)

	t.Run("EDNS version 1 gets BADVERS from dnsfence itself", func(t *testing.T) {
		// Cache the name first: BADVERS must come before the cache as well as the upstream.
		resolvertest.Exchange(t, "udp", d.dnsAddr, resolvertest.Query("v1.example", dns.TypeA, true))
		before := up.Queries()
		for _, network := range []string{"udp", "tcp"} {
			q := resolvertest.Query("v1.example", dns.TypeA, true)
			q.IsEdns0().SetVersion(1)
			r := resolvertest.Exchange(t, network, d.dnsAddr, q)
			opt := r.IsEdns0()
			if r.Rcode != dns.RcodeBadVers || opt == nil || opt.Version() != 0 || len(r.Answer) != 0 {
				t.Fatalf("%s: rcode %s, OPT %v, %d answers; want BADVERS, OPT version 0, no answer",
					network, dns.RcodeToString[r.Rcode], opt, len(r.Answer))
			}
			q = resolvertest.Query("uncached.example", dns.TypeA, true)
			q.IsEdns0().SetVersion(2)
			if r := resolvertest.Exchange(t, network, d.dnsAddr, q); r.Rcode != dns.RcodeBadVers {
				t.Fatalf("%s: version 2: rcode %s", network, dns.RcodeToString[r.Rcode])
			}
		}
		if n := up.Queries() - before; n != 0 {
			t.Fatalf("%d queries with EDNS version > 0 reached the upstream", n)
		}
	})

	t.Run("unknown opcodes get NOTIMP with the opcode echoed and flags clear", func(t *testing.T) {
		for _, opcode := range []int{3, 15, dns.OpcodeNotify, dns.OpcodeUpdate} {
			for _, edns := range []bool{false, true} {
				q := resolvertest.Query("opcode.example", dns.TypeA, edns)
				q.Opcode = opcode
				q.RecursionDesired, q.CheckingDisabled, q.AuthenticatedData, q.Zero = true, true, true, true
				b, err := q.Pack()
				if err != nil {
					t.Fatal(err)
				}
				reply := rawExchange(t, d.dnsAddr, b)
				flags := enc.BigEndian.Uint16(reply[2:])
				if reply[3]&0xf != dns.RcodeNotImplemented || int(flags>>11&0xf) != opcode || flags&0x8000 == 0 {
					t.Fatalf("opcode %d: rcode %d, opcode %d; want NOTIMP echoing the opcode", opcode, reply[3]&0xf, flags>>11&0xf)
				}
				for name, bit := range map[string]uint16{"AA": hdrAA, "RD": hdrRD, "RA": hdrRA, "Z": hdrZ, "AD": hdrAD, "CD": hdrCD} {
					if flags&bit != 0 {
						t.Errorf("opcode %d (EDNS %v): %s set in the NOTIMP reply", opcode, edns, name)
					}
				}
			}
		}
	})

	t.Run("TSIG-signed query is forwarded unchanged and its signed reply passed back uncached", func(t *testing.T) {
		c := &dns.Client{Timeout: 3 * time.Second, TsigSecret: map[string]string{keyName: secret}}
		for i := 1; i <= 3; i++ {
			if i == 3 {
				c.Net = "tcp" // the signed reply also survives the TCP listener
			}
			q := resolvertest.Query("www.signed.example", dns.TypeA, true)
			q.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
			// The client verifies the reply's TSIG: it fails unless the upstream's signed reply came
			// back unchanged.
			r, _, err := c.Exchange(q, d.dnsAddr)
			if err != nil {
				t.Fatalf("query %d: %v", i, err)
			}
			if r.Rcode != dns.RcodeSuccess || r.IsTsig() == nil || len(r.Answer) != 1 {
				t.Fatalf("query %d: %v", i, r)
			}
			if signedQueries.Load() != int64(i) {
				t.Fatalf("query %d: the upstream verified %d signed queries; a TSIG reply must not be cached", i, signedQueries.Load())
			}
		}
	})

	t.Run("TSIG with a key the upstream does not know: its NOTAUTH/BADKEY is passed back", func(t *testing.T) {
		q := resolvertest.Query("other.signed.example", dns.TypeA, false)
		q.SetTsig("unknown-key.", dns.HmacSHA256, 300, time.Now().Unix())
		// Sign with a key dnsfence's upstream does not have.
		b, _, err := dns.TsigGenerate(q, "b3RoZXIta2V5", "", false)
		if err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(rawExchange(t, d.dnsAddr, b)); err != nil {
			t.Fatal(err)
		}
		tsig := r.IsTsig()
		if r.Rcode != dns.RcodeNotAuth || tsig == nil || tsig.Error != dns.RcodeBadKey {
			t.Fatalf("got %v; want NOTAUTH with a TSIG carrying BADKEY", r)
		}
	})

	t.Run("TSIG-signed query for a blocked name is still blocked", func(t *testing.T) {
		before := signedQueries.Load()
		q := resolvertest.Query("blocked.example", dns.TypeA, true)
		q.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
		b, _, err := dns.TsigGenerate(q, secret, "", false)
		if err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(rawExchange(t, d.dnsAddr, b)); err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeNameError || signedQueries.Load() != before {
			t.Fatalf("rcode %s; want the block's NXDOMAIN without asking the upstream", dns.RcodeToString[r.Rcode])
		}
	})

	t.Run("AA stays clear on forwarded answers", func(t *testing.T) {
		r := resolvertest.Exchange(t, "udp", d.dnsAddr, resolvertest.Query("aa.example", dns.TypeA, false))
		if aaQueries.Load() == 0 || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Authoritative {
			t.Fatalf("upstream asked %d times; reply %v; want the answer with AA clear", aaQueries.Load(), r)
		}
	})

	t.Run("upstream REFUSED fails over, then SERVFAIL with EDE", func(t *testing.T) {
		r := resolvertest.Exchange(t, "udp", d.dnsAddr, resolvertest.Query("www.failover.example", dns.TypeA, true))
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("no failover from REFUSED: %v", r)
		}
		r = resolvertest.Exchange(t, "udp", d.dnsAddr, resolvertest.Query("www.refused.example", dns.TypeA, true))
		var ede *dns.EDNS0_EDE
		if opt := r.IsEdns0(); opt != nil {
			for _, o := range opt.Option {
				ede, _ = o.(*dns.EDNS0_EDE)
			}
		}
		if r.Rcode != dns.RcodeServerFailure || ede == nil || ede.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
			t.Fatalf("got %v; want SERVFAIL with EDE 22 (No Reachable Authority)", r)
		}
	})
}

// startTSIGServer starts an upstream that holds one TSIG key: it answers signed queries with a
// signed reply, and a query signed with another key with NOTAUTH and a TSIG carrying BADKEY (as
// BIND and Knot do). It counts the signed queries it verified.
func startTSIGServer(t *testing.T, keyName, secret string, verified *atomic.Int64) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, TsigSecret: map[string]string{keyName: secret}, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Compress = true
			tsig := r.IsTsig()
			if tsig == nil {
				m.Rcode = dns.RcodeRefused
				_ = w.WriteMsg(m)
				return
			}
			if err := w.TsigStatus(); err != nil {
				m.Rcode = dns.RcodeNotAuth
				m.Extra = append(m.Extra, &dns.TSIG{
					Hdr:       dns.RR_Header{Name: tsig.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
					Algorithm: tsig.Algorithm, TimeSigned: tsig.TimeSigned, Fudge: tsig.Fudge,
					OrigId: r.Id, Error: dns.RcodeBadKey,
				})
				b, _ := m.Pack()
				_, _ = w.Write(b)
				return
			}
			verified.Add(1)
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 77)}}
			if opt := r.IsEdns0(); opt != nil {
				m.SetEdns0(opt.UDPSize(), opt.Do())
			}
			m.SetTsig(keyName, tsig.Algorithm, 300, time.Now().Unix())
			_ = w.WriteMsg(m)
		})}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}
