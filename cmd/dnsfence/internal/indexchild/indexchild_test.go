//go:build linux

package indexchild

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dnsfence/dnsfence/blocklist"
)

// builtinFS stands for the program's built-in lists in the test binary, parent and child alike.
var builtinFS = fstest.MapFS{"lists/app.txt": {Data: []byte("app.example\n")}}

// policyEnv makes the test binary, started as a child, print each thread's scheduling policy
// after lowering its priority instead of building.
const policyEnv = "INDEXCHILD_TEST_POLICY"

func TestMain(m *testing.M) {
	if Child() {
		if os.Getenv(policyEnv) == "1" {
			if err := lowerPriority(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Print(threadPolicies())
			os.Exit(0)
		}
		os.Exit(Run(os.Stdin, os.Stdout, os.Stderr, builtinFS))
	}
	os.Exit(m.Run())
}

func writeList(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// builder runs this test binary as the child.
func builder() Builder { return Builder{Exe: os.Args[0], Builtin: builtinFS, Timeout: time.Minute} }

// TestBuild: the child keeps the index a Live of the same lists (one built in) maps.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	sources := []blocklist.Source{
		{Name: "ads", Category: "ads", Path: writeList(t, dir, "ads.txt", "ads.example\n||track.example^\n")},
		{Name: "app", Path: "lists/app.txt", FS: builtinFS},
		{Name: "ok", Path: writeList(t, dir, "ok.txt", "good.ads.example\n"), Allow: true},
		{Name: "later", Path: filepath.Join(dir, "missing.txt"), URL: "https://lists.example/l.txt", Optional: true},
	}
	cache := filepath.Join(t.TempDir(), "cache")
	b := builder()
	var rss int64
	b.Done = func(_ time.Duration, peak int64) { rss = peak }
	if err := b.Build(context.Background(), sources, cache); err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || rss > 1<<30 {
		t.Errorf("child's peak RSS = %d bytes", rss)
	}
	l, err := blocklist.NewLiveWith(sources, nil, blocklist.LiveOptions{IndexDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Initial().Indexed {
		t.Error("the child's index was not mapped")
	}
	for q, want := range map[string]string{"x.ads.example": "ads", "app.example": "app", "good.ads.example": "", "a.track.example": "ads"} {
		if list, _, _ := l.Match(q); list != want {
			t.Errorf("Match(%q) = %q, want %q", q, list, want)
		}
	}
}

// TestBuildErrors: a failing list, a file system the child cannot open and a child that hangs
// are errors naming the cause; nothing is left running.
func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	bad := []blocklist.Source{{Name: "bad", Path: writeList(t, dir, "bad.txt", "x..example\n")}}
	err := builder().Build(context.Background(), bad, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `blocklist "bad"`) || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("failing list: %v", err)
	}

	other := []blocklist.Source{{Name: "other", Path: "l.txt", FS: fstest.MapFS{"l.txt": {Data: []byte("a.example\n")}}}}
	if err := builder().Build(context.Background(), other, t.TempDir()); err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Errorf("list on another fs.FS: %v", err)
	}

	// A FIFO nobody writes: the child blocks reading it until the timeout kills it.
	fifo := filepath.Join(dir, "fifo.txt")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	b := builder()
	b.Timeout = 300 * time.Millisecond
	start := time.Now()
	err = b.Build(context.Background(), []blocklist.Source{{Name: "stuck", Path: fifo}}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("hung child: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hung child took %v to give up", d)
	}

	// A child killed while writing the index leaves no temporary file behind.
	cache := t.TempDir()
	left := writeList(t, cache, ".dnsfence-index-123", "half an index")
	err = b.Build(context.Background(), []blocklist.Source{{Name: "stuck", Path: fifo}}, cache)
	if _, serr := os.Stat(left); err == nil || !os.IsNotExist(serr) {
		t.Errorf("after a killed child (%v): %v", err, serr)
	}
}

// TestChildIdle: every thread of a child runs under SCHED_IDLE (or at nice 19 where that is
// refused).
func TestChildIdle(t *testing.T) {
	t.Setenv(policyEnv, "1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, os.Args[0])
	c.Env = append(os.Environ(), envMarker+"=1")
	c.Stdin = strings.NewReader("{}")
	out, err := c.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) < 2 {
		t.Fatalf("child threads: %q", out)
	}
	for _, l := range lines {
		if l != "idle" && l != "nice19" {
			t.Errorf("a child thread runs at %q, want idle: %q", l, out)
		}
	}
}

// threadPolicies lists the scheduling of each thread of this process: idle, nice19 or other.
func threadPolicies() string {
	d, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range d {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		a, err := unix.SchedGetAttr(tid, 0)
		switch {
		case err != nil:
			out = append(out, err.Error())
		case a.Policy == unix.SCHED_IDLE:
			out = append(out, "idle")
		case a.Nice == 19:
			out = append(out, "nice19")
		default:
			out = append(out, fmt.Sprintf("policy%d/nice%d", a.Policy, a.Nice))
		}
	}
	return strings.Join(out, "\n") + "\n"
}
