package history

import (
	"errors"
	"time"
)

// SQLiteOptions are how OpenSQLite treats the file.
type SQLiteOptions struct {
	// ReadOnly opens an existing file for reading only (reports): nothing is created, migrated
	// or moved aside.
	ReadOnly bool
	// OnCorrupt is told when a corrupt file was moved aside (to moved) and a fresh one created.
	OnCorrupt func(path, moved string, err error)
	// Now is the clock that names a corrupt file; time.Now.
	Now func() time.Time
}

// ErrNoSQLite is OpenSQLite's error in a binary built with -tags nosqlite (for routers with
// little flash: the pure-Go SQLite is about half of the binary). Such a binary keeps its history
// in PostgreSQL (history.postgres_url) or not at all (history.enabled: false).
var ErrNoSQLite = errors.New("this dnsfence was built without SQLite (-tags nosqlite): set history.postgres_url, or history.enabled: false")
