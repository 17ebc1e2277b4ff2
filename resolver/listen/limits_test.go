package listen_test

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/listen"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

func TestServerMaxTCPConns(t *testing.T) {
	ts := resolvertest.Serve(t, resolvertest.Answers(1), listen.Options{MaxTCPConns: 1})
	first, err := dns.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	q := resolvertest.Query("a.example", dns.TypeA, false)
	if err := first.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	if _, err := first.ReadMsg(); err != nil {
		t.Fatal(err)
	}
	second, err := dns.Dial("tcp", ts.Addr) // the kernel accepts; dnsfence does not yet
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	_ = second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if r, err := second.ReadMsg(); err == nil {
		t.Fatalf("second connection served past the limit: %v", r)
	}
	first.Close()
	_ = second.SetReadDeadline(time.Now().Add(3 * time.Second))
	if r, err := second.ReadMsg(); err != nil || r.Id != q.Id {
		t.Fatalf("second connection not served once the first closed: %v %v", r, err)
	}
}

func TestServerMaxTCPQueries(t *testing.T) {
	ts := resolvertest.Serve(t, resolvertest.Answers(1), listen.Options{MaxTCPQueries: 3})
	co, err := dns.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	for i := range 4 {
		q := resolvertest.Query("q.example", dns.TypeA, false)
		_ = co.WriteMsg(q)
		_ = co.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := co.ReadMsg()
		if i < 3 && err != nil {
			t.Fatalf("query %d: %v", i+1, err)
		}
		if i == 3 && err == nil {
			t.Fatal("a 4th query was answered on a connection limited to 3")
		}
	}
}
