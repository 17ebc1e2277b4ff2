package history

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// dialect is what differs between SQLite and PostgreSQL.
type dialect struct {
	name string
	// migrations[i] takes the schema from version i to i+1.
	migrations []string
	// upsert inserts one row (bucket, instance, client, app, list, outcome, count, first, last)
	// or merges it into the existing one.
	upsert string
	// ts converts a time to the column type; scan converts it back.
	ts   func(time.Time) any
	scan func(any) (time.Time, error)
	// arg is the n-th (1-based) placeholder.
	arg func(n int) string
}

// sqlStore is a Store on database/sql.
type sqlStore struct {
	db *sql.DB
	d  dialect
}

// migrate creates or upgrades the schema in one transaction, refusing a newer one.
func migrate(ctx context.Context, db *sql.DB, d dialect) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("schema_version: %w", err)
	}
	var v int
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err {
	case nil:
	case sql.ErrNoRows:
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("schema_version: %w", err)
		}
	default:
		return fmt.Errorf("schema_version: %w", err)
	}
	if v > len(d.migrations) {
		return fmt.Errorf("%w: the database is at schema version %d, this dnsfence knows up to %d; "+
			"upgrade dnsfence or point history at another database", ErrNewerSchema, v, len(d.migrations))
	}
	for i := v; i < len(d.migrations); i++ {
		if _, err := tx.ExecContext(ctx, d.migrations[i]); err != nil {
			return fmt.Errorf("migration to schema version %d: %w", i+1, err)
		}
	}
	if v < len(d.migrations) {
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = `+d.arg(1), len(d.migrations)); err != nil {
			return fmt.Errorf("schema_version: %w", err)
		}
	}
	return tx.Commit()
}

// Write upserts rows in one transaction.
func (s *sqlStore) Write(ctx context.Context, rows []Row) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	st, err := tx.PrepareContext(ctx, s.d.upsert)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, r := range rows {
		if _, err := st.ExecContext(ctx, s.d.ts(r.Bucket), r.Instance, r.Client, r.App, r.List, r.Outcome,
			r.Count, s.d.ts(r.FirstSeen), s.d.ts(r.LastSeen)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Prune deletes the buckets that started before before.
func (s *sqlStore) Prune(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM attempts WHERE bucket < `+s.d.arg(1), s.d.ts(before))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Query sums the rows matching f over their buckets.
func (s *sqlStore) Query(ctx context.Context, f Filter) ([]Row, error) {
	var (
		where = []string{"last_seen >= " + s.d.arg(1)}
		args  = []any{s.d.ts(f.Since)}
	)
	if f.App != "" {
		args = append(args, f.App)
		where = append(where, "app = "+s.d.arg(len(args)))
	}
	if f.Client != "" {
		args = append(args, f.Client)
		where = append(where, "client = "+s.d.arg(len(args)))
	}
	q := `SELECT instance, client, app, list, outcome, SUM(count), MIN(first_seen), MAX(last_seen) FROM attempts WHERE ` +
		strings.Join(where, " AND ") + ` GROUP BY instance, client, app, list, outcome`
	rs, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []Row
	for rs.Next() {
		var (
			r           Row
			first, last any
		)
		if err := rs.Scan(&r.Instance, &r.Client, &r.App, &r.List, &r.Outcome, &r.Count, &first, &last); err != nil {
			return nil, err
		}
		if r.FirstSeen, err = s.d.scan(first); err != nil {
			return nil, err
		}
		if r.LastSeen, err = s.d.scan(last); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

func (s *sqlStore) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

func (s *sqlStore) Close() error { return s.db.Close() }
