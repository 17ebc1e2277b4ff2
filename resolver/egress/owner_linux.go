//go:build linux

package egress

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Supported reports whether this platform has an nftables backend.
const Supported = true

// maxElemsPerMsg bounds one set-elements message; a batch holds as many messages as needed.
const maxElemsPerMsg = 1024

// learnQueue bounds the learned addresses waiting for the owner; more are dropped and counted.
const learnQueue = 1024

// Owner is the one goroutine that changes the table. Its methods are safe for concurrent use
// and never wait on netlink, except Counters, Explain and Close.
type Owner struct {
	opts  Options
	copts []nftables.ConnOption
	conn  *nftables.Conn // a fresh one per batch (begin), so an abandoned batch is never sent later
	table *nftables.Table

	pending chan *Ruleset // capacity 1: the newest wanted ruleset
	learn   chan learnReq
	reqs    chan func()
	stop    chan struct{}
	done    chan struct{}

	status statusCell

	// Owned by the goroutine (and by Start before it runs).
	applied *Ruleset
	// dirty: the kernel may not hold applied (a failed update, or the table was removed by
	// someone else, e.g. `nft flush ruleset` of a firewall reload); the next update or the
	// periodic check reinstalls the whole table.
	dirty     bool
	sinceHeal int
	sets      map[string]*nftables.Set
	learned   map[netip.Addr]learnedElem
	// counterBase keeps counts across a full replace, which recreates the counters at zero.
	counterBase map[string]Counter
	nextExpiry  time.Time
}

type learnReq struct {
	app   string
	addrs []netip.Addr
	ttl   time.Duration
}

type learnedElem struct {
	set     string
	expires time.Time
}

// Start checks the kernel and privileges, installs rs as one batch and starts the owner. An
// error means nothing was installed.
func Start(rs *Ruleset, opts Options) (*Owner, error) {
	if opts.NetNSFd == 0 {
		if err := checkCapability(); err != nil {
			return nil, err
		}
	}
	copts := []nftables.ConnOption{nftables.WithSockOptions(bigSendBuffer)}
	if opts.NetNSFd != 0 {
		copts = append(copts, nftables.WithNetNSFd(opts.NetNSFd))
	}
	conn, err := nftables.New(copts...)
	if err != nil {
		return nil, classify(err)
	}
	if _, err := conn.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return nil, classify(err)
	}
	o := &Owner{
		opts: opts, copts: copts, conn: conn, table: &nftables.Table{Name: rs.Table, Family: nftables.TableFamilyINet},
		pending: make(chan *Ruleset, 1), learn: make(chan learnReq, learnQueue), reqs: make(chan func()),
		stop: make(chan struct{}), done: make(chan struct{}),
		learned: map[netip.Addr]learnedElem{}, counterBase: map[string]Counter{},
	}
	if err := o.replace(rs); err != nil {
		return nil, classify(err)
	}
	o.status.set(nil)
	go o.run()
	return o, nil
}

// maxBatchBytes bounds one netlink batch. A batch is one transaction and must fit in one
// sendmsg; the default socket buffer (wmem_max, ~200 KiB) holds only a few thousand prefixes.
const maxBatchBytes = 64 << 20

// bigSendBuffer lets a whole table's batch through, as nft does: SO_SNDBUFFORCE needs
// CAP_NET_ADMIN, which owning a table needs anyway.
func bigSendBuffer(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, maxBatchBytes)
	}); err != nil {
		return err
	}
	if serr != nil {
		return c.SetWriteBuffer(maxBatchBytes) // capped by wmem_max, but better than the default
	}
	return nil
}

// Check verifies, without changing anything, that this process can own an nftables table.
func Check() error {
	if err := checkCapability(); err != nil {
		return err
	}
	conn, err := nftables.New()
	if err != nil {
		return classify(err)
	}
	if _, err := conn.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return classify(err)
	}
	return nil
}

// checkCapability reports a missing CAP_NET_ADMIN before netlink does, with the fix.
func checkCapability() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil // unknown: let netlink tell
	}
	if data[0].Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
		return ErrNoCapability
	}
	return nil
}

// classify turns netlink errors into the two actionable startup failures.
func classify(err error) error {
	switch {
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%w: %v", ErrNoCapability, err)
	case errors.Is(err, syscall.EPROTONOSUPPORT), errors.Is(err, syscall.EAFNOSUPPORT):
		return fmt.Errorf("%w: %v", ErrNoNFTables, err)
	case errors.Is(err, syscall.EOPNOTSUPP):
		return fmt.Errorf("%w (a needed nftables feature, e.g. nft_nat, nft_reject or set timeouts, is missing): %v", ErrNoNFTables, err)
	}
	return err
}

// Apply asks the owner to install rs; only the newest pending ruleset is applied. A ruleset
// with the same sets, counters and chains only replaces the sets' contents (counters keep
// counting); otherwise the table is replaced whole, in one batch.
func (o *Owner) Apply(rs *Ruleset) {
	for {
		select {
		case o.pending <- rs:
			return
		default:
		}
		select {
		case <-o.pending: // drop the older one
		default:
		}
	}
}

// Learn queues addresses to add to the learned set of app (the general one for "" or an app
// without its own) for ttl; false if the queue is full (the
// addresses are dropped: the next blocked query for the name learns them again).
func (o *Owner) Learn(app string, addrs []netip.Addr, ttl time.Duration) bool {
	select {
	case o.learn <- learnReq{app: app, addrs: addrs, ttl: ttl}:
		return true
	default:
		return false
	}
}

// Status is nil while the last netlink update succeeded, else its error.
func (o *Owner) Status() error { return o.status.get() }

// do runs f on the owner goroutine; false if the owner stopped or ctx ended first.
func (o *Owner) do(ctx context.Context, f func()) bool {
	ran := make(chan struct{})
	select {
	case o.reqs <- func() { f(); close(ran) }:
	case <-o.done:
		return false
	case <-ctx.Done():
		return false
	}
	select {
	case <-ran:
		return true
	case <-ctx.Done():
		return false
	}
}

// Counters reads the table's named counters (packets and bytes since the owner started).
func (o *Owner) Counters(ctx context.Context) (map[string]Counter, error) {
	var (
		out map[string]Counter
		err error
	)
	if !o.do(ctx, func() { out, err = o.readCounters() }) {
		return nil, errors.New("egress: owner not answering")
	}
	return out, err
}

// Elements counts the elements of each address set as the owner last installed them (learned
// sets: the live learned addresses).
func (o *Owner) Elements(ctx context.Context) map[string]int {
	var out map[string]int
	o.do(ctx, func() {
		out = map[string]int{}
		if o.applied == nil {
			return
		}
		for _, s := range o.applied.Sets {
			if s.Source != "" {
				out[s.Source] += len(s.Prefixes)
			}
		}
		for _, e := range o.learned {
			if src, ok := o.applied.SourceNamed(e.set); ok {
				out[src.Name]++
			}
		}
	})
	return out
}

// Explain says which sets hold a: the installed address sets, and learned elements with their
// expiry.
func (o *Owner) Explain(ctx context.Context, a netip.Addr) []Hit {
	var hits []Hit
	o.do(ctx, func() {
		if o.applied != nil {
			hits = explainStatic(o.applied, a)
		}
		if e, ok := o.learned[a.Unmap()]; ok && time.Now().Before(e.expires) {
			src, _ := o.applied.SourceNamed(e.set)
			hits = append(hits, Hit{Set: e.set, Source: src.Name, Kind: KindLearned, Prefix: netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), Expires: e.expires})
		}
	})
	return hits
}

// Close stops the owner and, with Options.Cleanup, deletes the table.
func (o *Owner) Close() error {
	select {
	case <-o.stop:
	default:
		close(o.stop)
	}
	<-o.done
	if o.opts.Cleanup {
		o.begin()
		o.conn.DelTable(o.table)
		if err := o.conn.Flush(); err != nil {
			return fmt.Errorf("egress: delete table %s: %w", o.table.Name, err)
		}
	}
	return nil
}

func (o *Owner) run() {
	defer close(o.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-o.stop:
			return
		case rs := <-o.pending:
			err := o.update(rs)
			o.dirty = err != nil
			o.report(err)
		case req := <-o.learn:
			o.report(o.addLearned(o.drainLearn(req)))
		case f := <-o.reqs:
			f()
		case now := <-tick.C:
			o.expire(now)
			o.heal()
		}
	}
}

func (o *Owner) report(err error) {
	if err == nil && o.status.get() == nil {
		return
	}
	o.status.set(err)
	if o.opts.OnUpdate != nil {
		o.opts.OnUpdate(err)
	}
}

// healEvery is how often (in seconds) the owner checks that its table is still installed.
const healEvery = 5

// heal reinstalls the whole table after a failed update, or when it has disappeared.
func (o *Owner) heal() {
	if o.sinceHeal++; o.sinceHeal < healEvery || o.applied == nil {
		return
	}
	o.sinceHeal = 0
	if !o.dirty {
		if _, err := o.conn.ListTableOfFamily(o.table.Name, nftables.TableFamilyINet); err == nil || !errors.Is(err, syscall.ENOENT) {
			return
		}
		o.report(fmt.Errorf("egress: table inet %s was removed by someone else; reinstalling it", o.table.Name))
	}
	err := o.replace(o.applied)
	o.dirty = err != nil
	o.report(err)
}

// begin starts a batch on a fresh connection.
func (o *Owner) begin() {
	if c, err := nftables.New(o.copts...); err == nil {
		o.conn = c
	}
}

// drainLearn takes what else is queued, so that a burst becomes one batch.
func (o *Owner) drainLearn(first learnReq) []learnReq {
	reqs := []learnReq{first}
	for len(reqs) < 256 {
		select {
		case r := <-o.learn:
			reqs = append(reqs, r)
		default:
			return reqs
		}
	}
	return reqs
}

// expire forgets learned elements the kernel has timed out, counting them.
func (o *Owner) expire(now time.Time) {
	if o.nextExpiry.IsZero() || now.Before(o.nextExpiry) {
		return
	}
	o.nextExpiry = time.Time{}
	n := 0
	for a, e := range o.learned {
		if !now.Before(e.expires) {
			delete(o.learned, a)
			n++
			continue
		}
		if o.nextExpiry.IsZero() || e.expires.Before(o.nextExpiry) {
			o.nextExpiry = e.expires
		}
	}
	if n > 0 && o.opts.OnExpired != nil {
		o.opts.OnExpired(n)
	}
}

// update installs rs: only the sets' contents when the structure is unchanged, else whole.
func (o *Owner) update(rs *Ruleset) error {
	if o.applied == nil || o.dirty || structure(o.applied) != structure(rs) {
		if counts, err := o.readCounters(); err == nil {
			o.counterBase = counts // the replaced counters restart at zero
		}
		return o.replace(rs)
	}
	o.begin()
	for i, s := range rs.Sets {
		old := o.applied.Sets[i]
		if s.Type == TypeIfname || prefixesEqual(old.Prefixes, s.Prefixes) {
			continue
		}
		ns := o.sets[s.Name]
		o.conn.FlushSet(ns)
		if err := o.addElements(ns, elements(s.Prefixes, 0)); err != nil {
			return err
		}
		// A flushed learned set loses its learned elements: put them back.
		if err := o.addElements(ns, o.learnedElements(s.Name)); err != nil {
			return err
		}
	}
	if err := o.conn.Flush(); err != nil {
		return fmt.Errorf("egress: update sets of table %s: %w", rs.Table, err)
	}
	o.applied = rs
	return nil
}

// replace deletes and recreates the table in one batch ("add; delete; add" so that a missing
// table is not an error): the old rules serve until the batch commits.
func (o *Owner) replace(rs *Ruleset) error {
	o.begin()
	t := &nftables.Table{Name: rs.Table, Family: nftables.TableFamilyINet}
	o.conn.AddTable(t)
	o.conn.DelTable(t)
	o.conn.AddTable(t)
	for _, c := range rs.Counters {
		o.conn.AddObj(&nftables.CounterObj{Table: t, Name: c})
	}
	sets := map[string]*nftables.Set{}
	for _, s := range rs.Sets {
		ns := &nftables.Set{Table: t, Name: s.Name, Interval: s.Interval, HasTimeout: s.Timeout}
		var elems []nftables.SetElement
		switch s.Type {
		case TypeIPv4:
			ns.KeyType = nftables.TypeIPAddr
		case TypeIPv6:
			ns.KeyType = nftables.TypeIP6Addr
		case TypeIfname:
			ns.KeyType = nftables.TypeIFName
			ns.KeyByteOrder = binaryutil.NativeEndian // what nft expects of a string key, or it lists ""
			for _, n := range s.Ifnames {
				elems = append(elems, nftables.SetElement{Key: ifname(n)})
			}
		}
		if err := o.conn.AddSet(ns, nil); err != nil {
			return fmt.Errorf("egress: set %s: %w", s.Name, err)
		}
		sets[s.Name] = ns
		if s.Type != TypeIfname {
			elems = elements(s.Prefixes, 0)
		}
		if err := o.addElements(ns, elems); err != nil {
			return err
		}
		if o.table != nil && o.table.Name == rs.Table {
			if err := o.addElements(ns, o.learnedElements(s.Name)); err != nil {
				return err
			}
		}
	}
	chains := map[string]*nftables.Chain{}
	for _, c := range rs.Chains {
		nc := &nftables.Chain{Name: c.Name, Table: t}
		if h := c.Hook; h != nil {
			accept := nftables.ChainPolicyAccept
			nc.Policy = &accept
			nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(h.Priority))
			switch h.Type {
			case "nat":
				nc.Type = nftables.ChainTypeNAT
			default:
				nc.Type = nftables.ChainTypeFilter
			}
			switch h.Hook {
			case "forward":
				nc.Hooknum = nftables.ChainHookForward
			case "output":
				nc.Hooknum = nftables.ChainHookOutput
			case "prerouting":
				nc.Hooknum = nftables.ChainHookPrerouting
			}
		}
		chains[c.Name] = o.conn.AddChain(nc)
	}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			exprs, err := ruleExprs(r, sets)
			if err != nil {
				return fmt.Errorf("egress: chain %s: %w", c.Name, err)
			}
			o.conn.AddRule(&nftables.Rule{Table: t, Chain: chains[c.Name], Exprs: exprs})
		}
	}
	if err := o.conn.Flush(); err != nil {
		return fmt.Errorf("egress: install table inet %s: %w", rs.Table, err)
	}
	if o.table != nil && o.table.Name != rs.Table {
		// Renamed: the old table is no longer ours to keep.
		o.begin()
		o.conn.DelTable(o.table)
		_ = o.conn.Flush()
		o.learned = map[netip.Addr]learnedElem{}
	}
	o.table, o.sets, o.applied = t, sets, rs
	return nil
}

func (o *Owner) addElements(s *nftables.Set, elems []nftables.SetElement) error {
	for len(elems) > 0 {
		n := min(len(elems), maxElemsPerMsg)
		if n < len(elems) && elems[n].IntervalEnd {
			n++ // keep a range's start and end in one message
		}
		if err := o.conn.SetAddElements(s, elems[:n]); err != nil {
			return fmt.Errorf("egress: set %s: %w", s.Name, err)
		}
		elems = elems[n:]
	}
	return nil
}

// learnedElements re-creates the live learned elements of the named set, with their time left.
func (o *Owner) learnedElements(set string) []nftables.SetElement {
	now := time.Now()
	var out []nftables.SetElement
	for a, e := range o.learned {
		if e.set != set {
			continue
		}
		if left := e.expires.Sub(now); left > time.Second {
			out = append(out, elements([]netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, left.Truncate(time.Millisecond))...)
		}
	}
	return out
}

// addLearned adds learned addresses in one batch. An address already learned is refreshed
// (deleted and re-added in the same batch) only when its time left is under half the new TTL
// and safely above zero, since deleting an element the kernel has just timed out fails the batch.
func (o *Owner) addLearned(reqs []learnReq) error {
	if o.applied == nil {
		return nil
	}
	o.begin()
	now := time.Now()
	var added, refreshed []netip.Addr
	batch := map[netip.Addr]bool{}
	for _, r := range reqs {
		for _, a := range r.addrs {
			a = a.Unmap()
			set, ok := LearnedSet(o.applied, r.app, a)
			ns := o.sets[set]
			if !ok || ns == nil || batch[a] {
				continue
			}
			elem := elements([]netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, r.ttl)
			if e, ok := o.learned[a]; ok && now.Before(e.expires) {
				left := e.expires.Sub(now)
				if left >= r.ttl/2 || left < 3*time.Second {
					continue
				}
				if err := o.conn.SetDeleteElements(ns, elements([]netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, 0)); err != nil {
					return err
				}
				refreshed = append(refreshed, a)
			} else {
				added = append(added, a)
			}
			if err := o.conn.SetAddElements(ns, elem); err != nil {
				return err
			}
			batch[a] = true
			o.learned[a] = learnedElem{set: set, expires: now.Add(r.ttl)}
			if o.nextExpiry.IsZero() || now.Add(r.ttl).Before(o.nextExpiry) {
				o.nextExpiry = now.Add(r.ttl)
			}
		}
	}
	if len(batch) == 0 {
		return nil
	}
	if err := o.conn.Flush(); err != nil {
		for a := range batch {
			delete(o.learned, a)
		}
		return fmt.Errorf("egress: add learned addresses: %w", err)
	}
	if o.opts.OnLearned != nil {
		o.opts.OnLearned(len(added), len(refreshed))
	}
	return nil
}

func (o *Owner) readCounters() (map[string]Counter, error) {
	objs, err := o.conn.GetObjects(o.table)
	if err != nil {
		return nil, fmt.Errorf("egress: read counters: %w", err)
	}
	out := make(map[string]Counter, len(objs))
	for name, c := range o.counterBase {
		out[name] = c
	}
	for _, obj := range objs {
		if c, ok := obj.(*nftables.CounterObj); ok {
			b := o.counterBase[c.Name]
			out[c.Name] = Counter{Packets: b.Packets + c.Packets, Bytes: b.Bytes + c.Bytes}
		}
	}
	return out, nil
}

// elements turns non-overlapping prefixes into interval set elements: each range (see Ranges)
// becomes a start and an end element [first, last+1).
func elements(ps []netip.Prefix, timeout time.Duration) []nftables.SetElement {
	var out []nftables.SetElement
	for _, r := range Ranges(ps) {
		out = append(out, nftables.SetElement{Key: r.First.AsSlice(), Timeout: timeout})
		if end := r.Last.Next(); end.IsValid() {
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true}) // the kernel refuses a timeout on an end
		}
	}
	return out
}

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// ruleExprs translates one rule of the description into netlink expressions.
func ruleExprs(r Rule, sets map[string]*nftables.Set) ([]expr.Any, error) {
	var out []expr.Any
	lookup := func(name string) (*expr.Lookup, error) {
		s := sets[name]
		if s == nil {
			return nil, fmt.Errorf("no set %q", name)
		}
		return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}, nil
	}
	for _, m := range r.Match {
		switch m.Kind {
		case MatchIIF:
			l, err := lookup(m.Set)
			if err != nil {
				return nil, err
			}
			out = append(out, &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, l)
		case MatchSaddr, MatchDaddr:
			l, err := lookup(m.Set)
			if err != nil {
				return nil, err
			}
			proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
			if m.V6 {
				proto, off, n = unix.NFPROTO_IPV6, 8, 16
			}
			if m.Kind == MatchDaddr {
				off += n
			}
			out = append(out,
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
				l)
		case MatchL4Proto:
			out = append(out,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{m.Proto}})
		case MatchDport:
			out = append(out,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(m.Port)})
		}
	}
	if r.Counter != "" {
		out = append(out, &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: r.Counter})
	}
	switch v := r.Verdict; v.Kind {
	case Drop:
		out = append(out, &expr.Verdict{Kind: expr.VerdictDrop})
	case RejectTCP:
		out = append(out, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	case RejectICMPX:
		out = append(out, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED})
	case Jump:
		out = append(out, &expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain})
	case Goto:
		out = append(out, &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain})
	case Accept:
		out = append(out, &expr.Verdict{Kind: expr.VerdictAccept})
	case Redirect:
		out = append(out,
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(v.Port)},
			&expr.Redir{RegisterProtoMin: 1})
	}
	return out, nil
}

// statusCell holds the last update's error.
type statusCell struct {
	mu  sync.Mutex
	err error
}

func (c *statusCell) get() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *statusCell) set(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}
