package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func TestRecordAndSummary(t *testing.T) {
	r := New([]string{"alipay", "qq"}, 2)
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	for range 3 {
		r.Record(a, "alipay", "alipay", true)
	}
	r.Record(a, "", "ads", true)
	r.Record(b, "qq", "qq", false)
	r.Record(c, "qq", "qq", true) // third client: past the limit of 2, counted as other

	s := r.Summary(10)
	apps := map[string]AppCount{}
	for _, x := range s.Apps {
		apps[x.App] = x
	}
	if apps["alipay"].Blocked != 3 || apps["qq"].Blocked != 1 || apps["qq"].Allowed != 1 || apps[Other].Blocked != 1 {
		t.Errorf("apps %+v", s.Apps)
	}
	if s.Lists["alipay"] != 3 || s.Lists["ads"] != 1 || s.Lists["qq"] != 2 {
		t.Errorf("lists %v", s.Lists)
	}
	if s.TrackedClients != 2 || len(s.Clients) != 3 {
		t.Fatalf("clients %+v (tracked %d)", s.Clients, s.TrackedClients)
	}
	top := s.Clients[0]
	if top.Client != "10.0.0.1" || top.Blocked != 4 || top.Apps["alipay"] != 3 || top.Apps[Other] != 1 {
		t.Errorf("top client %+v", top)
	}
	if s.Clients[2].Client != Other && s.Clients[1].Client != Other {
		t.Errorf("overflow client not reported as %s: %+v", Other, s.Clients)
	}
	if got := r.Summary(1).Clients; len(got) != 1 {
		t.Errorf("top 1 gave %d clients", len(got))
	}

	var text, js bytes.Buffer
	if err := s.WriteText(&text); err != nil || !strings.Contains(text.String(), "10.0.0.1") || !strings.Contains(text.String(), "alipay=3") {
		t.Errorf("text report:\n%s", text.String())
	}
	if err := s.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Clients[0].Blocked != 4 {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
}

func TestConcurrentRecord(t *testing.T) {
	r := New([]string{"alipay"}, 100)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				r.Record(netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", g, i%50)), "alipay", "alipay", true)
			}
			r.Summary(5)
		}()
	}
	wg.Wait()
	s := r.Summary(1000)
	var total int64
	for _, c := range s.Clients {
		total += c.Blocked
	}
	if total != 4000 || s.Apps[0].Blocked != 4000 || s.TrackedClients != 100 {
		t.Errorf("total %d, app %d, tracked %d; want 4000, 4000, 100", total, s.Apps[0].Blocked, s.TrackedClients)
	}
}
