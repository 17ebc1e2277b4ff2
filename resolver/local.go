package resolver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// LocalData holds records dnsfence answers itself, authoritatively: for a name it holds, a type
// it lacks is NODATA (not forwarded). Immutable once built.
type LocalData struct {
	byName map[string][]dns.RR // lower-case FQDN
}

// NewLocalData builds local data from records in zone-file syntax ("nas.home.arpa. 300 IN A
// 192.168.1.10"); names without a final dot are taken as absolute.
func NewLocalData(records []string) (*LocalData, error) {
	ld := &LocalData{byName: map[string][]dns.RR{}}
	for i, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil || rr == nil {
			return nil, fmt.Errorf("record %d %q: %v", i, s, err)
		}
		ld.add(rr)
	}
	return ld, nil
}

func (ld *LocalData) add(rr dns.RR) {
	k := strings.ToLower(dns.Fqdn(rr.Header().Name))
	ld.byName[k] = append(ld.byName[k], rr)
}

// AddHosts adds the entries of a hosts file ("IP name…"): A or AAAA for each name and a PTR for
// the address, TTL ttl. Comments and blank lines are skipped; a malformed line is an error.
func (ld *LocalData) AddHosts(r io.Reader, source string, ttl uint32) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		ip, err := netip.ParseAddr(f[0])
		if err != nil || len(f) < 2 {
			return fmt.Errorf("%s:%d: want \"IP name...\"", source, n)
		}
		ip = ip.Unmap()
		for i, name := range f[1:] {
			if _, ok := dns.IsDomainName(name); !ok {
				return fmt.Errorf("%s:%d: %q is not a domain name", source, n, name)
			}
			hdr := dns.RR_Header{Name: dns.Fqdn(name), Class: dns.ClassINET, Ttl: ttl}
			if ip.Is4() {
				hdr.Rrtype = dns.TypeA
				ld.add(&dns.A{Hdr: hdr, A: ip.AsSlice()})
			} else {
				hdr.Rrtype = dns.TypeAAAA
				ld.add(&dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
			}
			if i == 0 { // the canonical name gets the reverse record
				rev, _ := dns.ReverseAddr(ip.String())
				ld.add(&dns.PTR{Hdr: dns.RR_Header{Name: rev, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl}, Ptr: dns.Fqdn(name)})
			}
		}
	}
	return sc.Err()
}

// Len is the number of names held.
func (ld *LocalData) Len() int { return len(ld.byName) }

// Local answers the names in ld and passes the rest on. A CNAME whose target is outside ld is
// followed through next (so blocking and forwarding apply to the target), up to 8 links.
func Local(ld *LocalData) Middleware {
	return func(next Resolver) Resolver {
		return ResolverFunc(func(ctx context.Context, req *Request) (*Response, error) {
			q := req.Question()
			rrs, ok := ld.byName[strings.ToLower(q.Name)]
			if !ok || len(ld.byName) == 0 {
				return next.Resolve(ctx, req)
			}
			m := new(dns.Msg)
			m.SetReply(req.Msg)
			m.Authoritative = true
			name := q.Name
			for hop := 0; hop < 8 && ok; hop++ {
				var cname *dns.CNAME
				for _, rr := range rrs {
					switch {
					case rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY:
						m.Answer = append(m.Answer, withName(rr, name))
					case rr.Header().Rrtype == dns.TypeCNAME && q.Qtype != dns.TypeCNAME:
						cname = rr.(*dns.CNAME)
					}
				}
				if cname == nil {
					break
				}
				m.Answer = append(m.Answer, withName(cname, name))
				name = cname.Target
				rrs, ok = ld.byName[strings.ToLower(name)]
				if !ok { // outside: resolve the target through the rest of the chain
					sub := req.Msg.Copy()
					sub.Question[0].Name = name
					resp, err := next.Resolve(ctx, &Request{Msg: sub, Client: req.Client, Transport: req.Transport, Received: req.Received, Group: req.Group})
					if err != nil {
						return nil, err
					}
					if resp.Outcome == OutcomeBlocked {
						return resp, nil // the target is blocked: so is the name that leads to it
					}
					m.Answer = append(m.Answer, resp.Msg.Answer...)
					m.Rcode = resp.Msg.Rcode
				}
			}
			return &Response{Msg: m, Outcome: OutcomeLocal}, nil
		})
	}
}

// withName returns rr as owned by name (the query's spelling).
func withName(rr dns.RR, name string) dns.RR {
	c := dns.Copy(rr)
	c.Header().Name = name
	return c
}
