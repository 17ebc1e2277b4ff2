package main

import (
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/dnsfence/dnsfence/blocklist"
)

// listWarnings logs a list's skipped lines once per change of them, not at every reload of an
// unchanged list, and never for a load that failed: a failed list keeps its last good
// ListInfo, whose examples quote the file as it was, not as it is now (the failure itself is
// logged with the current file).
type listWarnings struct {
	mu   sync.Mutex
	last map[string]string // list name -> what was last logged
}

func (w *listWarnings) log(log *zap.Logger, l blocklist.ListInfo, failed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[string]string{}
	}
	if failed {
		delete(w.last, l.Name) // warn again once it loads
		return
	}
	sig := fmt.Sprint(l.Invalid, l.Unsupported, l.Examples)
	if w.last[l.Name] == sig {
		return
	}
	w.last[l.Name] = sig
	logInvalid(log, l)
}
