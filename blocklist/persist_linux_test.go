package blocklist

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestKeptIndexNotResident: mapping a kept index checks its checksum without reading through the
// mapping, so the index's pages are not in the process's RSS until queries touch them (they were
// all resident after a start: 12.9 MiB for the 1.16M-name list).
func TestKeptIndexNotResident(t *testing.T) {
	var names strings.Builder
	for i := range 200000 {
		fmt.Fprintf(&names, "host-%d.example-%d.test\n", i, i%97)
	}
	f := newLiveFixture(t, map[string]string{"ads": names.String()}, "ads")
	opts := LiveOptions{IndexDir: t.TempDir()}
	if _, err := NewLiveWith(f.sources, nil, opts); err != nil { // builds and keeps the index
		t.Fatal(err)
	}
	l, err := NewLiveWith(f.sources, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Initial().Indexed {
		t.Fatal("the second start did not map the kept index")
	}
	fi, err := os.Stat(filepath.Join(opts.IndexDir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	ix := l.Set().ix
	rss := mappingRSS(t, uintptr(unsafe.Pointer(unsafe.SliceData(ix.data)))-headerSize)
	t.Logf("index %d KiB, resident %d KiB", fi.Size()>>10, rss>>10)
	// The block offsets and the top index's prefixes are read at open; the names are not.
	if rss > fi.Size()/3 {
		t.Errorf("%d of the index's %d bytes are resident after a start without queries", rss, fi.Size())
	}
	if _, _, ok := l.Match("host-77.example-77.test"); !ok {
		t.Error("a listed name does not match")
	}
}

// mappingRSS is the resident size of this process's mapping that starts at addr (/proc/self/smaps).
func mappingRSS(t *testing.T, addr uintptr) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	total := int64(-1)
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			start, _, _ := strings.Cut(fields[0], "-")
			in = start == strconv.FormatUint(uint64(addr), 16)
		case in && len(fields) == 3 && fields[0] == "Rss:":
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			total = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if total < 0 {
		t.Fatalf("no mapping at %#x in smaps", addr)
	}
	return total
}

// TestReloadDropsOldPages: a reload takes the replaced index's pages out of the process at once
// (a child-built reload forces no collection, which alone would unmap them), and the old Set still
// answers correctly for a query that was reading it.
func TestReloadDropsOldPages(t *testing.T) {
	var names strings.Builder
	for i := range 200000 {
		fmt.Fprintf(&names, "host-%d.example-%d.test\n", i, i%97)
	}
	f := newLiveFixture(t, map[string]string{"ads": names.String()}, "ads")
	var calls int
	l, err := NewLiveWith(f.sources, nil, LiveOptions{IndexDir: t.TempDir(), BuildIndex: childHook(&calls)})
	if err != nil {
		t.Fatal(err)
	}
	old := l.Set()
	for i := range 200000 {
		if _, _, ok := old.Match(fmt.Sprintf("host-%d.example-%d.test", i, i%97)); !ok {
			t.Fatalf("host-%d not listed", i)
		}
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(old.ix.data))) - headerSize
	before := mappingRSS(t, addr)
	f.replace("ads", names.String()+"new.test\n")
	if res := l.Reload(); !res.Child {
		t.Fatalf("reload not built by the hook: %v", res.ChildErr)
	}
	after := mappingRSS(t, addr)
	t.Logf("old index resident: %d KiB before the reload, %d KiB after", before>>10, after>>10)
	if before < 1<<20 || after > before/10 {
		t.Errorf("old index resident: %d bytes before the reload, %d after", before, after)
	}
	if _, _, ok := old.Match("host-12345.example-26.test"); !ok {
		t.Error("the replaced Set no longer matches after its pages were dropped")
	}
	if _, _, ok := l.Match("new.test"); !ok {
		t.Error("the new Set does not match")
	}

	// DropPages does the same for a Live that another replaced (a config reload).
	cur := l.Set()
	for i := range 200000 {
		cur.Match(fmt.Sprintf("host-%d.example-%d.test", i, i%97))
	}
	addr = uintptr(unsafe.Pointer(unsafe.SliceData(cur.ix.data))) - headerSize
	before = mappingRSS(t, addr)
	l.DropPages()
	if after = mappingRSS(t, addr); before < 1<<20 || after > before/10 {
		t.Errorf("DropPages: index resident: %d bytes before, %d after", before, after)
	}
	if _, _, ok := l.Match("new.test"); !ok {
		t.Error("the Set no longer matches after DropPages")
	}
}
