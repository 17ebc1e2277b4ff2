// Package indexchild builds the blocklist index of a reload in a child process: the program
// re-executes itself with an environment marker (not a flag: flags are a public contract), the
// child lowers itself to the idle CPU priority, builds the index file with blocklist.BuildIndex
// and exits; the server then only checks and maps the file (blocklist.LiveOptions.BuildIndex).
//
// On a one-core router a build in the server took the core from the queries for a second or
// more, in slices of a few milliseconds (blocklist's pacer), and grew the server's heap. At idle
// priority the child runs when the server has nothing to do, and its memory is its own and
// returns to the system when it exits.
//
// The child opens no listeners and no log files: main hands it the process before anything else
// (Child, Run). It reads its request as JSON on stdin, writes its peak RSS as JSON on stdout, and
// an error on stderr with a non-zero exit status.
package indexchild

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"time"

	"github.com/dnsfence/dnsfence/blocklist"
)

// envMarker, set to "1" in the child's environment, makes the program a child.
const envMarker = "DNSFENCE_INDEX_CHILD"

// DefaultTimeout bounds a child's build; a child still running is killed and the reload builds
// in the server. A 1.16M-name list builds in about a second on one core when nothing else runs.
const DefaultTimeout = 2 * time.Minute

// maxStderr is how much of a child's stderr is kept for its error.
const maxStderr = 4 << 10

// Builder starts children; its Build is a blocklist.LiveOptions.BuildIndex.
type Builder struct {
	// Exe is the program to run; "" is this one (/proc/self/exe on Linux, which stays the
	// running binary even after an upgrade replaced the file).
	Exe string
	// Timeout bounds each build; 0 is DefaultTimeout.
	Timeout time.Duration
	// Builtin is the file system of the lists built into the program (configs.Lists()): a
	// source on it is passed as such, and the child reads it from its own copy. A source on any
	// other fs.FS cannot be passed, and Build fails (the reload then builds in the server).
	Builtin fs.FS
	// Done, if set, is told about each child that exited: how long it ran and its peak RSS in
	// bytes, as the child measured it (0 if it did not say), whether or not it succeeded.
	Done func(took time.Duration, peakRSS int64)
}

// request is what the child reads on stdin.
type request struct {
	Dir     string
	Sources []source
}

type source struct {
	Name, Category, Path, URL string
	Builtin                   bool
	Allow, Optional           bool
}

// report is what the child writes on stdout as it exits.
type report struct {
	// PeakRSS is the child's own peak RSS (VmHWM): the rusage of a process started by vfork
	// counts the parent's peak, whose memory it shared until it executed.
	PeakRSS int64
}

// Child reports whether this process is a child started by Build; main calls Run if so, first
// thing.
func Child() bool { return os.Getenv(envMarker) == "1" }

// Build builds the index of sources in dir in a child process and waits for it (at most the
// timeout, and until ctx is done). The error carries the child's stderr.
func (b Builder) Build(ctx context.Context, sources []blocklist.Source, dir string) error {
	req := request{Dir: dir}
	for _, s := range sources {
		if s.FS != nil && !sameFS(s.FS, b.Builtin) {
			return fmt.Errorf("list %q is on a file system a child process cannot open", s.Name)
		}
		req.Sources = append(req.Sources, source{Name: s.Name, Category: s.Category, Path: s.Path, URL: s.URL,
			Builtin: s.FS != nil, Allow: s.Allow, Optional: s.Optional})
	}
	in, err := json.Marshal(req)
	if err != nil {
		return err
	}
	exe := b.Exe
	if exe == "" {
		if exe, err = self(); err != nil {
			return err
		}
	}
	timeout := b.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Args = []string{os.Args[0]} // ps shows the program, not "exe"
	cmd.Env = append(withoutMarker(os.Environ()), envMarker+"=1")
	cmd.Stdin = bytes.NewReader(in)
	stderr, stdout := &tail{max: maxStderr}, &tail{max: maxStderr}
	cmd.Stderr, cmd.Stdout = stderr, stdout
	cmd.WaitDelay = time.Second // stderr held open by a grandchild must not hang the reload
	start := time.Now()
	if err = cmd.Start(); err == nil {
		// The child's first thread is put at idle priority at once, before the runtime and
		// the packages it initializes run (a few milliseconds of CPU at normal priority
		// otherwise); the threads it makes inherit it, and the child sets any it made before.
		_ = idleThread(cmd.Process.Pid)
		err = cmd.Wait()
	}
	if b.Done != nil && cmd.ProcessState != nil {
		var rep report
		_ = json.Unmarshal(stdout.buf, &rep)
		b.Done(time.Since(start), rep.PeakRSS)
	}
	if err == nil {
		return nil
	}
	removeTemporary(dir, start)
	msg := strings.TrimSpace(stderr.String())
	if ctx.Err() != nil {
		return fmt.Errorf("child process killed after %v: %w (stderr: %q)", time.Since(start).Round(time.Millisecond), ctx.Err(), msg)
	}
	if msg != "" {
		return fmt.Errorf("child process: %w: %s", err, msg)
	}
	return fmt.Errorf("child process: %w", err)
}

// removeTemporary removes the temporary index files a child killed midway left in dir (those
// made since start): it removes them itself when it is let finish.
func removeTemporary(dir string, start time.Time) {
	matches, _ := filepath.Glob(filepath.Join(dir, ".dnsfence-index-*"))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() && !fi.ModTime().Before(start.Add(-time.Second)) {
			_ = os.Remove(m)
		}
	}
}

// sameFS reports whether a and b are the same file system (a map, such as fstest.MapFS, is
// compared by identity: == would panic).
func sameFS(a, b fs.FS) bool {
	ta := reflect.TypeOf(a)
	switch {
	case ta != reflect.TypeOf(b) || ta == nil:
		return false
	case ta.Kind() == reflect.Map:
		return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
	case ta.Comparable():
		return a == b
	}
	return false
}

func self() (string, error) {
	if runtime.GOOS == "linux" {
		return "/proc/self/exe", nil
	}
	return os.Executable()
}

func withoutMarker(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, envMarker+"=") {
			out = append(out, e)
		}
	}
	return out
}

// Run is the child: it lowers its priority, reads the request from stdin, builds the index and
// returns the exit status (errors are written to stderr, its peak RSS as JSON to stdout).
// builtin is the program's built-in lists (configs.Lists()).
func Run(stdin io.Reader, stdout, stderr io.Writer, builtin fs.FS) int {
	defer func() {
		b, _ := json.Marshal(report{PeakRSS: peakRSS()})
		fmt.Fprintf(stdout, "%s\n", b)
	}()
	if err := lowerPriority(); err != nil {
		// Building at normal priority still spares the server's heap; say so and go on.
		fmt.Fprintln(stderr, "dnsfence index child: could not lower the CPU priority:", err)
	}
	var req request
	dec := json.NewDecoder(stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fmt.Fprintln(stderr, "dnsfence index child: bad request:", err)
		return 2
	}
	sources := make([]blocklist.Source, 0, len(req.Sources))
	for _, s := range req.Sources {
		src := blocklist.Source{Name: s.Name, Category: s.Category, Path: s.Path, URL: s.URL, Allow: s.Allow, Optional: s.Optional}
		if s.Builtin {
			src.FS = builtin
		}
		sources = append(sources, src)
	}
	if err := blocklist.BuildIndex(sources, req.Dir); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// tail keeps the last max bytes written.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.buf) }
