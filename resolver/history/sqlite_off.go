//go:build nosqlite

package history

import "context"

// OpenSQLite fails with ErrNoSQLite: this binary was built without SQLite.
func OpenSQLite(context.Context, string, SQLiteOptions) (Store, error) { return nil, ErrNoSQLite }

// SQLiteBuiltIn reports whether this binary can keep the history in a SQLite file.
func SQLiteBuiltIn() bool { return false }
