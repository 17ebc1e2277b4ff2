//go:build !nosqlite

package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ncruces/go-sqlite3"
	// The driver: pure Go (SQLite compiled to Wasm, translated to Go by wasm2go), so it builds
	// with CGO_ENABLED=0 for every release architecture, mips and mipsle included.
	_ "github.com/ncruces/go-sqlite3/driver"
)

// sqliteDialect: times are unix seconds, the table has no rowid (the key is the row).
var sqliteDialect = dialect{
	name: "sqlite",
	migrations: []string{
		`CREATE TABLE attempts (
			bucket     INTEGER NOT NULL,
			instance   TEXT    NOT NULL,
			client     TEXT    NOT NULL,
			app        TEXT    NOT NULL,
			list       TEXT    NOT NULL,
			outcome    TEXT    NOT NULL,
			count      INTEGER NOT NULL,
			first_seen INTEGER NOT NULL,
			last_seen  INTEGER NOT NULL,
			PRIMARY KEY (bucket, instance, client, app, list, outcome)
		) WITHOUT ROWID`,
	},
	upsert: `INSERT INTO attempts (bucket, instance, client, app, list, outcome, count, first_seen, last_seen)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (bucket, instance, client, app, list, outcome) DO UPDATE SET
			count = count + excluded.count,
			first_seen = min(first_seen, excluded.first_seen),
			last_seen = max(last_seen, excluded.last_seen)`,
	ts: func(t time.Time) any { return t.Unix() },
	scan: func(v any) (time.Time, error) {
		n, ok := v.(int64)
		if !ok {
			return time.Time{}, fmt.Errorf("history: time column holds %T", v)
		}
		return time.Unix(n, 0).UTC(), nil
	},
	arg: func(int) string { return "?" },
}

// OpenSQLite opens (creating it and its directory if needed) the history database at path and
// brings its schema up to date. A file that is not a database or fails SQLite's quick check is
// moved aside as path.corrupt-<time> and replaced by a fresh one.
func OpenSQLite(ctx context.Context, path string, o SQLiteOptions) (Store, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("history database: %w", err)
		}
		db, err := openSQLiteDB(path, true)
		if err != nil {
			return nil, err
		}
		// A file without a schema yet is one a server is creating right now (a fresh start, or
		// a corrupt one just replaced): it holds no attempts, which is not an error for a report.
		var tables int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'`).Scan(&tables); err == nil && tables == 0 {
			db.Close()
			return unwrittenStore{}, nil
		}
		if err := checkSQLiteVersion(ctx, db); err != nil {
			db.Close()
			return nil, err
		}
		return &sqlStore{db: db, d: sqliteDialect}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("history database: %w", err)
	}
	s, err := openSQLiteRW(ctx, path)
	if err == nil || !isCorrupt(err) {
		return s, err
	}
	moved := fmt.Sprintf("%s.corrupt-%s", path, o.Now().UTC().Format("20060102T150405Z"))
	if rerr := os.Rename(path, moved); rerr != nil {
		return nil, fmt.Errorf("history database %s is corrupt (%w) and cannot be moved aside: %w", path, err, rerr)
	}
	for _, ext := range []string{"-wal", "-shm"} {
		_ = os.Rename(path+ext, moved+ext)
	}
	if o.OnCorrupt != nil {
		o.OnCorrupt(path, moved, err)
	}
	return openSQLiteRW(ctx, path)
}

func openSQLiteRW(ctx context.Context, path string) (*sqlStore, error) {
	db, err := openSQLiteDB(path, false)
	if err != nil {
		return nil, err
	}
	if err := quickCheck(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	if err := migrate(ctx, db, sqliteDialect); err != nil {
		db.Close()
		return nil, fmt.Errorf("history database %s: %w", path, err)
	}
	return &sqlStore{db: db, d: sqliteDialect}, nil
}

func openSQLiteDB(path string, readOnly bool) (*sql.DB, error) {
	q := url.Values{}
	// WAL: a report (another process) reads while the server writes; NORMAL sync is durable
	// enough for a WAL database and spares a router's flash an fsync per flush.
	q.Add("_pragma", "busy_timeout(5000)")
	if readOnly {
		q.Set("mode", "ro")
	} else {
		q.Add("_pragma", "journal_mode(wal)")
		q.Add("_pragma", "synchronous(normal)")
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	// url.URL writes "file:///abs" for an absolute path; SQLite takes "file:/abs" and "file:///abs".
	db, err := sql.Open("sqlite3", u.String())
	if err != nil {
		return nil, fmt.Errorf("history database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; each connection costs a Wasm instance
	return db, nil
}

// quickCheck touches every page header: it finds a file that is not a database, or whose
// structure is damaged, at open rather than at the first write hours later.
func quickCheck(ctx context.Context, db *sql.DB) error {
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return fmt.Errorf("%w: quick_check: %s", errCorrupt, res)
	}
	return nil
}

func checkSQLiteVersion(ctx context.Context, db *sql.DB) error {
	var v int
	if err := db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("history database: %w", err)
	}
	if v > len(sqliteDialect.migrations) {
		return fmt.Errorf("%w: the database is at schema version %d, this dnsfence knows up to %d",
			ErrNewerSchema, v, len(sqliteDialect.migrations))
	}
	return nil
}

var errCorrupt = errors.New("database is corrupt")

func isCorrupt(err error) bool {
	return errors.Is(err, errCorrupt) || errors.Is(err, sqlite3.NOTADB) || errors.Is(err, sqlite3.CORRUPT) ||
		strings.Contains(err.Error(), "file is not a database")
}

// SQLiteBuiltIn reports whether this binary can keep the history in a SQLite file.
func SQLiteBuiltIn() bool { return true }

// unwrittenStore is the read-only view of a database no dnsfence has written its schema to yet:
// it holds no rows.
type unwrittenStore struct{}

func (unwrittenStore) Write(context.Context, []Row) error {
	return errors.New("history database: opened read-only")
}
func (unwrittenStore) Prune(context.Context, time.Time) (int64, error) { return 0, nil }
func (unwrittenStore) Query(context.Context, Filter) ([]Row, error)    { return nil, nil }
func (unwrittenStore) Ping(context.Context) error                      { return nil }
func (unwrittenStore) Close() error                                    { return nil }
