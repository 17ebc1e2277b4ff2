//go:build !nopostgres

package history

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	// pgx is the maintained pure-Go PostgreSQL driver; its stdlib adapter lets the SQLite and
	// PostgreSQL stores share one database/sql implementation.
	_ "github.com/jackc/pgx/v5/stdlib"
)

// postgresDialect: times are timestamptz (Grafana's PostgreSQL data source reads them as is);
// several instances share the table, each row carrying its instance.
var postgresDialect = dialect{
	name: "postgres",
	migrations: []string{
		`CREATE TABLE attempts (
			bucket     timestamptz NOT NULL,
			instance   text        NOT NULL,
			client     text        NOT NULL,
			app        text        NOT NULL,
			list       text        NOT NULL,
			outcome    text        NOT NULL,
			count      bigint      NOT NULL,
			first_seen timestamptz NOT NULL,
			last_seen  timestamptz NOT NULL,
			PRIMARY KEY (bucket, instance, client, app, list, outcome)
		)`,
	},
	upsert: `INSERT INTO attempts (bucket, instance, client, app, list, outcome, count, first_seen, last_seen)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (bucket, instance, client, app, list, outcome) DO UPDATE SET
			count = attempts.count + excluded.count,
			first_seen = LEAST(attempts.first_seen, excluded.first_seen),
			last_seen = GREATEST(attempts.last_seen, excluded.last_seen)`,
	ts: func(t time.Time) any { return t.UTC() },
	scan: func(v any) (time.Time, error) {
		t, ok := v.(time.Time)
		if !ok {
			return time.Time{}, fmt.Errorf("history: time column holds %T", v)
		}
		return t.UTC(), nil
	},
	arg: func(n int) string { return "$" + strconv.Itoa(n) },
}

// OpenPostgres connects to the database at url (a postgres:// URL or key=value DSN) and brings
// its schema up to date. Migrations take an advisory lock, so instances starting together do
// not race.
func OpenPostgres(ctx context.Context, url string) (Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("history postgres: %w", err)
	}
	db.SetMaxOpenConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	if err := migratePostgres(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("history postgres: %w", err)
	}
	return &sqlStore{db: db, d: postgresDialect}, nil
}

// migrationLock is the advisory lock key held while migrating ("dnsf" in ASCII).
const migrationLock = 0x646e7366

func migratePostgres(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return err
	}
	defer func() { _, _ = conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, migrationLock) }()
	return migrate(ctx, db, postgresDialect)
}
