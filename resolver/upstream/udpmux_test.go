package upstream

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzCheckQuestion checks the wire-level question match the UDP reader uses against miekg's
// unpacking: a reply it takes has the query's question (name without case, type, class), and a
// reply with the query's question written out plainly is taken.
func FuzzCheckQuestion(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("Www.Example.COM.", dns.TypeA)
	good := new(dns.Msg)
	good.SetReply(q)
	good.Question[0].Name = "www.example.com."
	for _, m := range []*dns.Msg{q, good} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "www.example.com.", uint16(dns.TypeA))
	}
	f.Add([]byte("\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"), "a.", uint16(1))
	f.Add([]byte("\x00\x01\x81\x81\x00\x00\x00\x00\x00\x00\x00\x00"), "a.", uint16(1))
	f.Fuzz(func(t *testing.T, reply []byte, name string, qtype uint16) {
		if len(reply) < 12 || !dns.IsFqdn(name) {
			return
		}
		query := new(dns.Msg)
		query.SetQuestion(name, qtype)
		packed, err := query.Pack()
		if err != nil {
			return
		}
		wq := questionWire(packed)
		if wq == nil {
			t.Fatalf("no question in the packed query for %q", name)
		}
		err = checkQuestion(reply, wq)

		// The reference: miekg's reading of the header and the question.
		var h dns.Header
		qd := binary.BigEndian.Uint16(reply[4:])
		h.Bits = binary.BigEndian.Uint16(reply[2:])
		refOK, plain := false, false
		switch {
		case qd == 0:
			refOK = h.Bits&0xF == dns.RcodeFormatError
			plain = true
		case qd == 1:
			got, off, uerr := dns.UnpackDomainName(reply, 12)
			if uerr == nil && off+4 <= len(reply) {
				refOK = strings.EqualFold(got, query.Question[0].Name) &&
					binary.BigEndian.Uint16(reply[off:]) == qtype &&
					binary.BigEndian.Uint16(reply[off+2:]) == dns.ClassINET
				plain = off == 12+len(wq)-4 // no compression pointer in the name
			}
		}
		if err == nil && !refOK {
			t.Fatalf("took a reply whose question is not %s %d: % x", name, qtype, reply)
		}
		if err != nil && refOK && plain {
			t.Fatalf("refused a reply with the question %s %d written out: %v (% x)", name, qtype, err, reply)
		}
	})
}
