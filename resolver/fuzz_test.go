package resolver_test

import (
	"net"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// recorder is a dns.ResponseWriter that keeps what was written.
type recorder struct {
	udp    bool
	writes []*dns.Msg
}

func (r *recorder) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr {
	if r.udp {
		return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
}
func (r *recorder) WriteMsg(m *dns.Msg) error {
	r.writes = append(r.writes, m)
	return nil
}
func (r *recorder) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	r.writes = append(r.writes, m)
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// FuzzHandler feeds arbitrary packets through the real handler and chain (validate, block with
// every sinkhole mode, a final stage that answers big) the way the server does: whatever
// unpacks is served, and must get exactly one reply that matches the query and fits UDP limits.
func FuzzHandler(f *testing.F) {
	for _, q := range []*dns.Msg{
		new(dns.Msg).SetQuestion("example.com.", dns.TypeA),
		new(dns.Msg).SetQuestion("x.blocked.example.", dns.TypeAAAA),
		new(dns.Msg).SetQuestion("x.blocked.example.", dns.TypeTXT).SetEdns0(4096, true),
		new(dns.Msg).SetQuestion("big.example.", dns.TypeA).SetEdns0(600, false),
		new(dns.Msg).SetQuestion("example.com.", dns.TypeAXFR),
		new(dns.Msg).SetNotify("example.com."),
	} {
		b, err := q.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0), true)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0}, uint8(1), true)
	f.Add([]byte{0xff, 0xff, 0xff}, uint8(2), false)

	f.Fuzz(func(t *testing.T, packet []byte, mode uint8, udp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(packet); err != nil || req.Response {
			return // miekg answers FORMERR itself, or AcceptMsg drops responses
		}
		sink := &resolver.Sinkhole{Mode: resolver.SinkholeMode(mode % 4)}
		h := &resolver.Handler{Resolver: resolver.Chain(resolvertest.Answers(40),
			resolver.Validate(),
			resolver.Block(resolver.Blocker{Matcher: suffixMatcher{}, Sinkhole: sink, InspectAnswers: true}),
		)}
		w := &recorder{udp: udp}
		h.ServeDNS(w, req)
		if len(w.writes) != 1 {
			t.Fatalf("%d replies", len(w.writes))
		}
		reply := w.writes[0]
		if reply.Id != req.Id || !reply.Response {
			t.Fatalf("reply id %d response %v for query id %d", reply.Id, reply.Response, req.Id)
		}
		wire, err := reply.Pack()
		if err != nil {
			t.Fatalf("reply does not pack: %v", err)
		}
		if udp {
			limit := dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > limit {
				limit = int(opt.UDPSize())
			}
			if len(wire) > limit && !reply.Truncated {
				t.Fatalf("UDP reply of %d bytes over the client's %d without TC", len(wire), limit)
			}
		}
		if (req.IsEdns0() == nil) != (reply.IsEdns0() == nil) {
			t.Fatalf("client EDNS %v, reply EDNS %v", req.IsEdns0() != nil, reply.IsEdns0() != nil)
		}
	})
}
