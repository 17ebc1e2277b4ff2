package indexchild

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lowerPriority puts every thread of the process under SCHED_IDLE (it runs only when the CPU
// has nothing else to do; the server's threads preempt it at once) or, where that is refused,
// at nice 19. Both are per thread on Linux: threads created later inherit from their creator,
// so every existing one is set, and the pass is repeated until it finds none left over (the
// runtime may start one meanwhile).
func lowerPriority() error {
	for range 10 {
		changed, err := eachThread(lowerThread)
		if err != nil || !changed {
			return err
		}
	}
	return nil
}

// lowerThread puts thread tid under SCHED_IDLE, or at nice 19 where that is refused; changed is
// false if it already was.
func lowerThread(tid int) (changed bool, err error) {
	if a, err := unix.SchedGetAttr(tid, 0); err == nil && (a.Policy == unix.SCHED_IDLE || a.Nice == 19) {
		return false, nil
	}
	if unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0) == nil {
		return true, nil
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 19); err != nil {
		return false, err
	}
	return true, nil
}

// idleThread lowers the thread tid (of a child: its first thread has the process's id).
func idleThread(tid int) error {
	_, err := lowerThread(tid)
	return err
}

// eachThread calls f for each thread of the process; changed is true if f changed any.
func eachThread(f func(tid int) (bool, error)) (changed bool, err error) {
	d, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return false, err
	}
	var errs []error
	for _, e := range d {
		tid, perr := strconv.Atoi(e.Name())
		if perr != nil {
			continue
		}
		c, ferr := f(tid)
		changed = changed || c
		if ferr != nil && !errors.Is(ferr, unix.ESRCH) {
			errs = append(errs, ferr)
		}
	}
	return changed, errors.Join(errs...)
}

// peakRSS is this process's peak RSS in bytes (VmHWM), 0 if unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
